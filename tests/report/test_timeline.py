"""timeline.html: self-contained, the run's data on it, and it renders in a real headless browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cli.report import load_run, write_report
from cli.report.timeline import TIMELINE_HTML, write_timeline
from tests.report.builders import write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (Debian's `chromium`: "
                                    "scripts/ci-system-deps.sh installs it)")


def render(page: Path, shot: Path) -> str:
    """Open `page` in headless Chromium, screenshot it to `shot`; the browser's console log."""
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--window-size=1400,1300",
         f"--screenshot={shot}", "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0",
         f"--user-data-dir={shot.parent / 'chromium-profile'}", page.as_uri()],
        capture_output=True, text=True, timeout=90, check=False)
    return out.stderr


def test_the_timeline_is_one_self_contained_file_with_the_runs_data(tmp_path: Path) -> None:
    page = write_timeline(load_run(write_run(tmp_path)))
    html = page.read_text(encoding="utf-8")
    assert page.name == TIMELINE_HTML
    assert not re.search(r"<script[^>]+src=", html), "every script is inlined"
    assert "Bokeh" in html and len(html) > 500_000  # BokehJS itself is in the file
    for name in ("node-a", "node-b", "kill -9", "sigstop", "GPU memory used per node", "GPU compute",
                 "Queue depth per node", "Request TTFT", "Events"):
        assert name in html, name


def test_write_report_writes_the_timeline_with_the_plots(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path)
    assert run_dir / TIMELINE_HTML in write_report(run_dir).written
    assert TIMELINE_HTML not in [p.name for p in write_report(run_dir, plots=False).written]


@needs_chromium
def test_the_timeline_renders_in_headless_chromium_without_a_script_error(tmp_path: Path) -> None:
    page = write_timeline(load_run(write_run(tmp_path)))
    shot = tmp_path / "timeline.png"
    console = render(page, shot)
    print(f"timeline screenshot: {shot}")
    assert "Uncaught" not in console, console
    assert "document idle" in console, f"BokehJS never finished rendering:\n{console}"
    assert shot.is_file() and shot.stat().st_size > 20_000  # a page with plots, not a blank one


@needs_chromium
def test_the_script_error_check_can_fail(tmp_path: Path) -> None:
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefinedFunction();</script></body></html>", encoding="utf-8")
    assert "Uncaught" in render(page, tmp_path / "broken.png")
