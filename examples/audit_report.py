"""Build the demo audit report from SYNTHETIC score rows and transcripts.

Everything this script reads is made up by `qualaudit.report.synthetic` (no real
conversation, no model run): 6,000 conversations over 26 ISO weeks, AI and human agents on
three channels, four intents, customers, start and end times, a model version change in
week 13, and planted effects for the report to find: AI is behind humans within every intent
yet ahead on raw averages (a mix effect), AI resolution falls from week 20, and bots keep
answering for a turn or two after escalation becomes needed.

    python examples/audit_report.py                       # writes examples/demo_report/
    python examples/audit_report.py --out /tmp/demo --n 2000 --screenshot

Writes scores.jsonl and transcripts.jsonl (the synthetic inputs), report.json, report.md and
report.html; with --screenshot also report.png (needs headless Chromium).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from qualaudit.cli import main as qualaudit
from qualaudit.report.synthetic import (
    SyntheticSpec,
    synthetic_rows,
    synthetic_transcript,
    write_jsonl,
)


def build(out: Path, n: int, seed: int = 0) -> list[Path]:
    """Writes the synthetic inputs and the report in `out`; returns the report files."""
    out.mkdir(parents=True, exist_ok=True)
    rows = list(synthetic_rows(SyntheticSpec(n=n, weeks=26, seed=seed)))
    scores, transcripts = out / "scores.jsonl", out / "transcripts.jsonl"
    write_jsonl(iter(rows), scores)
    write_jsonl((synthetic_transcript(r) for r in rows), transcripts)
    outputs = [out / "report.json", out / "report.md", out / "report.html"]
    code = qualaudit(["report", str(scores), "--transcripts", str(transcripts),
                      "--by", "agent_type,channel", "--strata", "intent", "--over", "week",
                      "--threshold", "escalation=0.7", "--seed", str(seed), "--quiet",
                      "--title", "Demo on SYNTHETIC data (qualaudit.report.synthetic): no real "
                      "conversation, no real model run",
                      "--json", str(outputs[0]), "--markdown", str(outputs[1]),
                      "--html", str(outputs[2])])
    if code != 0:
        raise SystemExit(code)
    return outputs


def screenshot(page: Path, png: Path, height: int = 5200) -> None:
    """A PNG of the page's first `height` pixels, in headless Chromium."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(b)), None)
    if browser is None:
        raise SystemExit("--screenshot needs headless Chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={profile}", "--hide-scrollbars",
                        f"--window-size=1280,{height}", f"--screenshot={png.resolve()}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=120)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,  # relative, so the report names its inputs so
                        default=Path(os.path.relpath(Path(__file__).parent / "demo_report")))
    parser.add_argument("--n", type=int, default=6000, help="synthetic conversations")
    parser.add_argument("--screenshot", action="store_true", help="also report.png (Chromium)")
    args = parser.parse_args()
    files = build(args.out, args.n)
    if args.screenshot:
        screenshot(files[2], args.out / "report.png")
    print("wrote", ", ".join(str(f) for f in files), "(from SYNTHETIC data)")
