"""`scripts/fuzz_daemons.py --quick`: hostile traffic at every port of a real local cluster,
and every daemon still answers, with its file descriptors and memory back near where they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts/fuzz_daemons.py"


def test_fuzz_quick_leaves_every_daemon_answering_and_bounded() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"]
    for name, d in result["daemons"].items():
        assert d["after"]["alive"] == 1.0, name
        assert sum(d["ports"].values()) >= 100, name
        assert d["after"]["fds"] <= d["before"]["fds"] + 8, (name, d)
        assert d["after"]["rss_mb"] <= d["before"]["rss_mb"] + 200, (name, d)
    bus = {k: v for k, v in result["daemons"].items() if k != "emulator"}
    for name, d in bus.items():  # rate-limited: far fewer lines than frames
        assert d["after"]["log"] - d["before"]["log"] < sum(d["ports"].values()) / 2, (name, d)
