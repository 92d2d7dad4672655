"""The HTML report: self-contained, escaped, charts with a size, and (in headless Chromium)
rendered non-blank with a silent console and hostile transcript text shown as text.

Browser tests need Debian's `chromium` (or chromium-browser / google-chrome) on PATH. Where
none is found they skip with that reason, except when QUALAUDIT_REQUIRE_BROWSER=1 (set by
`.ci/run`), where a missing browser is a failure.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from qualaudit.report.build import ReportOptions, build_report
from qualaudit.report.html import CSP, to_html
from qualaudit.report.synthetic import (
    SyntheticSpec,
    synthetic_rows,
    synthetic_transcript,
    write_jsonl,
)

HOSTILE = ("<script>document.title='pwned'</script> "
           "<img src=x onerror=\"document.title='pwned'\"> "
           "<a href=\"javascript:document.title='pwned'\">click me</a>")


class _Elements(HTMLParser):
    """Every element (tag, attributes) of a page, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data):
        self.text.append(data)


def _assert_inert(text: str) -> _Elements:
    """No script element, no event handler attribute, nothing fetched, no javascript: URL."""
    page = _Elements(text)
    assert [t for t, _ in page.elements if t in ("script", "iframe", "object", "embed", "link")] == []
    for tag, attrs in page.elements:
        assert not [k for k in attrs if k.startswith("on")], (tag, attrs)
        for key in ("src", "href", "action", "formaction", "srcset"):
            if key in attrs:
                assert tag == "img" and attrs[key].startswith("data:image/svg+xml;base64,"), (tag, attrs)
    shown = "".join(page.text)
    assert HOSTILE in shown  # the hostile transcript, shown as the text it is
    return page


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """An HTML report whose first triage item's evidence turn, id and a cohort are hostile."""
    directory = tmp_path_factory.mktemp("html")
    rows = list(synthetic_rows(SyntheticSpec(n=1500, weeks=16, seed=4)))
    rows[0]["resolution"] = 0.0
    rows[0]["evidence"]["resolution"] = [{"index": 0, "role": "customer", "contribution": -1.0}]
    rows[0]["metadata"]["channel"] = "<b onmouseover=alert(1)>chat</b>"
    rows[1]["id"] = "\"><script>alert(2)</script>"
    rows[1]["resolution"] = 0.0
    transcripts = [synthetic_transcript(r) for r in rows]
    transcripts[0]["turns"][0]["text"] = HOSTILE
    path = directory / "transcripts.jsonl"
    write_jsonl(iter(transcripts), path)
    report = build_report(rows, ReportOptions(by=("agent_type", "channel"), strata="intent",
                                              over="week", transcripts=str(path), n_boot=200,
                                              title="<i>SYNTHETIC</i> & test"))
    html_path = directory / "report.html"
    html_path.write_text(to_html(report), encoding="utf-8")
    return html_path


def test_page_is_self_contained_with_a_no_script_policy(page):
    text = page.read_text(encoding="utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in text
    assert "default-src 'none'" in CSP and "script" not in CSP
    assert "<script" not in text.lower()
    elements = _assert_inert(text)
    assert "\"><script>alert(2)</script>" in "".join(elements.text)  # a hostile id, as text
    assert "<b onmouseover=alert(1)>chat</b>" in "".join(elements.text)  # a hostile cohort
    assert "<i>SYNTHETIC</i> & test" in "".join(elements.text)  # the title, as text


def test_every_chart_has_a_size_and_is_svg(page):
    text = page.read_text(encoding="utf-8")
    images = re.findall(r'<img class="chart" src="data:image/svg\+xml;base64,([^"]+)" '
                        r'width="(\d+)" height="(\d+)"', text)
    assert len(images) >= 7  # 2 cohort keys, AI vs human, histogram, 2 speed, trend(s)
    for payload, width, height in images:
        assert int(width) > 0 and int(height) > 0
        svg = base64.b64decode(payload).decode("utf-8")
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "<script" not in svg
        assert re.search(r'<svg [^>]*width="[\d.]+pt" height="[\d.]+pt"', svg)


def _browser() -> str:
    found = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                  if shutil.which(name)), None)
    if found is None:
        message = "no headless Chromium on PATH (apt-get install chromium)"
        if os.environ.get("QUALAUDIT_REQUIRE_BROWSER") == "1":
            pytest.fail(message + "; QUALAUDIT_REQUIRE_BROWSER=1 makes it required")
        pytest.skip(message)
    return found


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root, where Chromium's sandbox cannot start; the page is ours
    command = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
               "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_renders_a_non_blank_page_with_a_silent_console(page, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, "--hide-scrollbars", "--window-size=1280,2400",
                     f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    assert _console(done.stderr) == []
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 2400)
    histogram = image.histogram()
    dark = sum(histogram[:200]) / (image.size[0] * image.size[1])
    assert dark > 0.01  # text and charts, not a white page
    assert len([c for c in histogram if c]) > 50  # many grey levels: charts and text


def test_hostile_transcript_text_renders_as_text_and_runs_nothing(page, tmp_path):
    done = _chromium(tmp_path, "--dump-dom", page.as_uri())
    dom = done.stdout
    assert "<title>qualaudit audit report</title>" in dom  # no script retitled the page
    _assert_inert(dom)  # the page as Chromium built it: the hostile text stayed text
    assert _console(done.stderr) == []  # nothing the CSP had to block either


def test_chromium_prints_the_page_to_pdf(page, tmp_path):
    pdf = tmp_path / "report.pdf"
    done = _chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri())
    assert pdf.exists(), done.stderr[-2000:]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF")
    assert len(re.findall(rb"/Type\s*/Page[^s]", data)) >= 3  # the whole report, on pages
    assert _console(done.stderr) == []
