"""Markdown: every section rendered; text from data escaped and formula-guarded, numbers not."""

from __future__ import annotations

from qualaudit.report.build import ReportOptions, build_report
from qualaudit.report.markdown import text_cell, to_markdown
from qualaudit.report.synthetic import SyntheticSpec, synthetic_rows


def test_text_cells_are_guarded_and_escaped():
    assert text_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert text_cell("@SUM(A1)") == "'@SUM(A1)"
    assert text_cell("-2+3") == "'-2+3"
    assert text_cell("a|b<script>`x`\nnext") == "a\\|b&lt;script&gt;\\`x\\` next"
    assert text_cell(None) == "–"


def test_hostile_ids_and_cohorts_are_inert_in_every_table():
    rows = list(synthetic_rows(SyntheticSpec(n=300, weeks=4)))
    for r in rows[:40]:
        r["metadata"]["channel"] = "=cmd|' /C calc'!A0"
    rows[0]["id"] = "<img src=x onerror=alert(1)>"
    rows[0]["resolution"] = 0.0  # first in the resolution queue
    markdown = to_markdown(build_report(rows, ReportOptions(by=("channel",), n_boot=100)))
    assert "| '=cmd\\|' /C calc'!A0 |" in markdown
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown
    assert "| -0." in markdown and "'-0." not in markdown  # numbers are not guarded


def test_sparse_rows_render_in_every_format(tmp_path):
    """Rows with one score, no metadata, one agent type: every section says what is missing."""
    from qualaudit.report.csv_tables import write_csv_tables
    from qualaudit.report.html import to_html

    rows = [{"id": f"r{i}", "agent_type": "human", "resolution": i / 20} for i in range(20)]
    report = build_report(rows, ReportOptions(over="week", n_boot=100))
    assert report["ai_vs_human"]["notes"] == [
        "AI vs human needs conversations of both agent types (found 0 ai, 20 human)"]
    assert report["speed"]["note"].startswith("no row carries both")
    assert report["trends"]["notes"] == [
        "no row has a parseable metadata.started_at or ended_at: no trends"]
    markdown = to_markdown(report)
    assert "AI vs human needs conversations of both agent types" in markdown
    page = to_html(report)
    assert "no row carries both metadata.started_at" in page
    assert [p.name for p in write_csv_tables(report, tmp_path)] == ["cohorts.csv", "triage.csv"]
    compare_only = build_report([], ReportOptions(), compare=_pair(tmp_path, rows))
    assert "## Two versions compared" in to_markdown(compare_only)
    assert "Two versions compared" in to_html(compare_only)


def _pair(tmp_path, rows):
    from qualaudit.report.synthetic import write_jsonl

    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_jsonl(iter(rows), a)
    write_jsonl(iter(rows[5:]), b)
    return a, b


def test_many_strata_render_the_largest_and_count_the_rest():
    from qualaudit.report.html import to_html
    from qualaudit.report.table import MAX_COHORTS

    rows = list(synthetic_rows(SyntheticSpec(n=800, weeks=2)))
    for i, r in enumerate(rows):
        r["metadata"]["intent"] = f"intent-{i % 200}"  # 200 strata
    report = build_report(rows, ReportOptions(strata="intent", n_boot=100))
    assert len(report["ai_vs_human"]["targets"]["resolution"]["strata"]) == 200
    markdown, page = to_markdown(report), to_html(report)
    more = f"{200 - MAX_COHORTS} smaller strata are in the JSON report."
    assert more in markdown and more in page
    assert sum(line.startswith("| intent-") for line in markdown.splitlines()) == MAX_COHORTS
    not_comparable = report["ai_vs_human"]["targets"]["resolution"]["not_comparable"]
    assert len(not_comparable) > 10  # 4 conversations a stratum: many have one side only
    assert f"and {len(not_comparable) - 10} more |" in markdown  # the list is cut at 10


def test_odd_subsets_render_everywhere_without_a_warning(tmp_path):
    """25 random small or odd inputs (1 to 200 rows, missing empathy, times, agent types,
    evidence) through every section, Markdown and CSV (HTML for 5 of them), numpy warnings
    as errors."""
    import random
    import warnings

    from qualaudit.report.csv_tables import write_csv_tables
    from qualaudit.report.html import to_html

    base = list(synthetic_rows(SyntheticSpec(n=400, weeks=10, seed=9)))
    rng = random.Random(0)
    for trial in range(25):
        rows = [dict(r, metadata=dict(r["metadata"]))
                for r in rng.sample(base, rng.choice([1, 2, 3, 5, 30, 200]))]
        for r in rows:
            if rng.random() < 0.2:
                r["empathy"] = None
            if rng.random() < 0.1:
                r["agent_type"] = rng.choice(["mixed", "unknown", None, "ai"])
            if rng.random() < 0.1:
                r["metadata"].pop("started_at")
            if rng.random() < 0.05:
                r["evidence"] = None
        options = ReportOptions(by=rng.choice([("agent_type",), ("agent_type", "channel")]),
                                over=rng.choice([None, "day", "week", "month"]),
                                strata=rng.choice([None, "intent"]), n_boot=100)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            report = build_report(rows, options)
            assert to_markdown(report)
            assert trial % 5 or to_html(report)  # HTML (matplotlib) on every fifth: time
            write_csv_tables(report, tmp_path / str(trial))
