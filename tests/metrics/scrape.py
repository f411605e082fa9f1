"""Scraping a daemon's /metrics over HTTP and checking it with promtool."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemons.emulator.testing import free_port

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian's `prometheus` "
                                    "package; scripts/ci-system-deps.sh installs it)")


def loopback_bind() -> str:
    return f"127.0.0.1:{free_port()}"


def scrape(bind: str, timeout_s: float = 5.0) -> str:
    with urllib.request.urlopen(f"http://{bind}/metrics", timeout=timeout_s) as reply:
        text: str = reply.read().decode()
    return text


def promtool_check(text: str) -> None:
    """`promtool check metrics` on the exposition text: a failed assertion quoting its complaints."""
    assert PROMTOOL is not None
    out = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and not out.stdout.strip() and not out.stderr.strip(), out.stdout + out.stderr


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, sample: str, **labels: str) -> float:
    """The value of one sample (0 when absent: a labelled counter not yet incremented)."""
    return samples(text).get((sample, tuple(sorted(labels.items()))), 0.0)
