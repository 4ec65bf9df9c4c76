"""The HTML report: self-contained, escaped, and what a person sees in a real browser."""

from __future__ import annotations

import dataclasses
import html.parser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gradproof import Report
from test_render_text import CONTROL_NAMES, control_report, failing_report

EVIL = "<script>alert(1)</script>"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def evil_report() -> Report:
    """The hand-built failing report, its failing block renamed to a script tag."""
    report = failing_report(name=EVIL)
    return dataclasses.replace(report, notes=(f"a note about {EVIL} & co",))


def test_every_user_provided_name_is_escaped():
    page = evil_report().to_html(plots=False)
    assert EVIL not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp; co" in page
    assert "<script" not in page.lower()


def test_control_characters_in_names_show_as_escapes_and_stay_apart():
    page = control_report().to_html(plots=False)
    assert "\x1b" not in page and "\r" not in page and "\u202e" not in page
    cells = re.findall(r'<td class="name">([^<]*)</td>', page)
    blocks = cells[: len(CONTROL_NAMES)]
    assert blocks == ["W\\x1b[2J", "a\\nb", "\\r", "a\\\\nb"]
    assert cells[len(CONTROL_NAMES) :] == [f"{name}[1]" for name in blocks]
    seen = _visible_text(page)
    assert "backprop runs output to input): W\\x1b[2J, a\\nb, \\r, a\\\\nb" in seen
    assert "note: a note naming W\\x1b[2J\\u202e" in seen


def test_the_page_is_self_contained():
    page = evil_report().to_html()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    assert len(images) == 2 and all(s.startswith("data:image/svg+xml;base64,") for s in images)


def test_the_page_colours_each_verdict_as_the_plots_do():
    from gradproof._render.words import COLOUR

    page = evil_report().to_html(plots=False)
    for status, colour in COLOUR.items():
        assert f".gradproof .{status} {{ background: {colour}; }}" in page


def test_the_notebook_view_is_a_fragment_with_the_same_content():
    report = evil_report()
    fragment = report._repr_html_()
    assert fragment.startswith('<div class="gradproof">') and "<html" not in fragment
    assert "&lt;script&gt;" in fragment and EVIL not in fragment


def test_the_page_shows_the_verdict_blocks_and_worst_elements():
    text = _visible_text(evil_report().to_html(plots=False))
    assert "gradient check: FAIL" in text
    assert "layer1.weight" in text and "inconclusive (2/3 checked)" in text
    assert f"{EVIL}[3, 1]" in text
    assert "2.00× the numerical derivative" in text


class _Text(html.parser.HTMLParser):
    """The text a person sees: no <style>, <script> or <title> content."""

    HIDDEN = frozenset({"style", "script", "title", "head"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN:
            self.hidden -= 1

    def handle_data(self, data):
        if not self.hidden:
            self.parts.append(data)


def _visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _headless(browser: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [browser, *flags, *extra], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.slow
def test_in_headless_chromium(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (CI installs it: .ci/system-packages)")
    pytest.importorskip("matplotlib", reason="the page's plots need matplotlib")
    page = tmp_path / "report.html"
    page.write_text(evil_report().to_html(), encoding="utf-8")
    url = page.as_uri()

    dom = _headless(browser, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    seen = _visible_text(dom.stdout)
    assert "gradient check: FAIL" in seen
    assert f"{EVIL}[3, 1]" in seen  # the script tag shows as text ...
    assert "<script" not in dom.stdout.lower()  # ... and no script element exists
    assert "suspects (latest block first" in seen
    assert "chance a bug this size went unseen" in seen
    assert dom.stdout.count("<img") == 2

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "html_report.png"
    shot.unlink(missing_ok=True)
    done = _headless(
        browser, tmp_path / "profile-shot", "--window-size=1200,1600", f"--screenshot={shot}", url
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000  # a blank page compresses to a few kB
