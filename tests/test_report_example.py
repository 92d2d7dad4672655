"""The demo report example runs, and the committed demo report is the one it makes."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_demo_report_example_builds_every_output(tmp_path):
    build = runpy.run_path(str(EXAMPLES / "audit_report.py"))["build"]
    files = build(tmp_path / "demo", n=800)
    report = json.loads(files[0].read_text(encoding="utf-8"))
    assert report["n_conversations"] == 800 and report["trends"]["periods"][0] == "2026-W02"
    assert files[1].read_text(encoding="utf-8").startswith("# qualaudit audit report")
    assert "Content-Security-Policy" in files[2].read_text(encoding="utf-8")


def test_committed_demo_report_shows_the_planted_effects():
    demo = EXAMPLES / "demo_report"
    report = json.loads((demo / "report.json").read_text(encoding="utf-8"))
    assert report["n_conversations"] == 6000 and "SYNTHETIC" in report["title"]
    assert "SYNTHETIC" in (demo / "report.html").read_text(encoding="utf-8")
    assert report["ai_vs_human"]["targets"]["resolution"]["mix_effect"]
    assert any(a["cohort"] == "ai" and a["target"] == "resolution" for a in report["trends"]["alerts"])
    assert (demo / "report.png").stat().st_size > 50_000
    assert (demo / "report.html").stat().st_size < 2_000_000
