"""`qualaudit report`: files in, JSON and Markdown out, errors as exit code 2 with the file
and line named."""

from __future__ import annotations

import json

import pytest

from qualaudit.cli import main
from qualaudit.report.synthetic import SyntheticSpec, synthetic_rows, write_jsonl


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "scores.jsonl"
    write_jsonl(synthetic_rows(SyntheticSpec(n=1500, weeks=12, seed=2)), path)
    return path


def test_report_writes_json_and_markdown(tmp_path, scores, capsys):
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    code = main(["report", str(scores), "--json", str(out_json), "--markdown", str(out_md),
                 "--by", "agent_type,channel", "--strata", "intent", "--over", "week",
                 "--threshold", "escalation=0.7", "--n-boot", "200", "--quiet"])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["n_conversations"] == 1500
    assert set(report["cohorts"]["tables"]) == {"agent_type", "channel"}
    assert report["triage"]["queues"]["escalation"]["threshold"] == 0.7
    markdown = out_md.read_text()
    for heading in ("## Cohorts", "## AI vs human, like for like", "## Trends and decline alerts",
                    "## Triage queues", "## Provenance"):
        assert heading in markdown
    assert "report on 1,500 conversations" in capsys.readouterr().err


def test_report_prints_markdown_without_outputs(scores, capsys):
    assert main(["report", str(scores), "--n-boot", "100", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("# qualaudit audit report")


def test_compare_alone(tmp_path, scores, capsys):
    out = tmp_path / "c.json"
    assert main(["report", "--compare", str(scores), str(scores), "--json", str(out),
                 "--n-boot", "100", "--quiet"]) == 0
    section = json.loads(out.read_text())["compare"]
    assert section["n_paired"] == 1500 and section["targets"]["resolution"]["flips"]["share"] == 0


@pytest.mark.parametrize("argv, message", [
    (["--by", "region"], "cohort column 'region' is in no score row"),
    (["--threshold", "speed=0.3"], "thresholds for unknown targets ['speed']"),
    (["--threshold", "escalation=70"], "thresholds must be in [0, 1]"),
    (["--tz", "Mars/Olympus", "--over", "day"], "unknown time zone 'Mars/Olympus'"),
])
def test_usage_errors_exit_2(scores, capsys, argv, message):
    assert main(["report", str(scores), "--quiet", "--n-boot", "100", *argv]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_row_is_named_by_file_and_line(tmp_path, capsys):
    rows = list(synthetic_rows(SyntheticSpec(n=5, weeks=1)))
    rows[3]["schema_version"] = "2.1"
    path = tmp_path / "bad.jsonl"
    write_jsonl(iter(rows), path)
    assert main(["report", str(path), "--quiet"]) == 2
    assert f"{path}, line 4, field 'schema_version'" in capsys.readouterr().err


def test_missing_inputs_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.jsonl")]) == 2
    assert main(["report"]) == 2
    assert "give score files" in capsys.readouterr().err


def test_report_writes_self_contained_html(tmp_path, scores):
    out = tmp_path / "r.html"
    assert main(["report", str(scores), "--html", str(out), "--over", "week", "--n-boot", "100",
                 "--quiet"]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in text
    assert text.count('<img class="chart"') >= 4


def test_help_and_the_report_modules_load_no_plotting_clustering_or_torch():
    import subprocess
    import sys

    code = ("import sys, qualaudit.cli, qualaudit.report.build, qualaudit.report.html; "
            "qualaudit.cli.build_parser().format_help(); "
            "print(sorted(m for m in ('matplotlib', 'sklearn', 'torch', 'transformers') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_csv_tables_guard_text_cells_and_keep_numbers(tmp_path):
    import csv

    rows = list(synthetic_rows(SyntheticSpec(n=400, weeks=8, seed=5)))
    for r in rows[:60]:
        r["metadata"]["channel"] = "=HYPERLINK(\"http://x\")"
    rows[0]["id"], rows[0]["resolution"] = "@SUM(A1)", 0.0
    path = tmp_path / "s.jsonl"
    write_jsonl(iter(rows), path)
    out = tmp_path / "tables"
    assert main(["report", str(path), "--by", "channel", "--strata", "intent", "--over", "week",
                 "--csv", str(out), "--n-boot", "100", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["ai_vs_human.csv", "cohorts.csv",
                                                      "trends.csv", "triage.csv"]
    with (out / "cohorts.csv").open(encoding="utf-8") as handle:
        cohorts = list(csv.DictReader(handle))
    assert {r["cohort"] for r in cohorts} >= {"'=HYPERLINK(\"http://x\")"}
    assert all(not r["cohort"].startswith(("=", "+", "-", "@")) for r in cohorts)
    float(cohorts[0]["mean"])  # numbers stay numbers
    with (out / "triage.csv").open(encoding="utf-8") as handle:
        triage = list(csv.DictReader(handle))
    assert triage[0]["id"] == "'@SUM(A1)"
    with (out / "ai_vs_human.csv").open(encoding="utf-8") as handle:
        assert any(r["mean_ai"].startswith("0.") for r in csv.DictReader(handle))


def test_rows_left_out_of_the_whole_report_exit_3(tmp_path, capsys):
    rows = list(synthetic_rows(SyntheticSpec(n=40, weeks=2)))
    rows[5]["metadata"]["started_at"] = "yesterday"  # left out of trends and speed only
    path = tmp_path / "s.jsonl"
    write_jsonl(iter(rows), path)
    assert main(["report", str(path), "--quiet", "--n-boot", "100"]) == 0
    assert "excluded 1 row(s) from trends and speed" in capsys.readouterr().err
    write_jsonl(iter(rows + [rows[0]]), path)  # a second row for an id
    assert main(["report", str(path), "--quiet", "--n-boot", "100"]) == 3
    assert "excluded 1 row(s) from all: a second row for an id" in capsys.readouterr().err



def test_progress_covers_both_passes(tmp_path, monkeypatch):
    import qualaudit.report.table as table
    from qualaudit.report.build import ReportOptions, build_report

    monkeypatch.setattr(table, "PROGRESS_EVERY", 50)  # 100,000 in real runs
    path = tmp_path / "s.jsonl"
    write_jsonl(synthetic_rows(SyntheticSpec(n=120, weeks=2)), path)
    calls = []
    build_report([path], ReportOptions(n_boot=100), on_progress=lambda n, s: calls.append((n, s)))
    assert calls == [(50, str(path)), (100, str(path)),
                     (50, f"{path}, second pass: full rows of the queued conversations"),
                     (100, f"{path}, second pass: full rows of the queued conversations")]
