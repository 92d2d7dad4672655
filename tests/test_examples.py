"""The shipped examples stay readable and runnable."""

import runpy
import sys
from pathlib import Path

from qualaudit import Transcript, iter_records

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_files_read_without_rejections():
    jsonl = list(iter_records(EXAMPLES / "transcripts.jsonl"))
    table = list(iter_records(EXAMPLES / "turns.csv"))
    assert all(isinstance(r, Transcript) for r in jsonl + table)
    assert {r.agent_type for r in jsonl + table} == {"ai", "human", "mixed"}
    assert len(jsonl) == 6 and [r.id for r in table] == ["ex-101", "ex-102"]


def test_python_example_runs(tiny_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["score_transcripts.py", str(tiny_model_dir)])
    runpy.run_path(str(EXAMPLES / "score_transcripts.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "resolution" in out and "ai" in out and "human" in out
