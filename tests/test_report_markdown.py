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
