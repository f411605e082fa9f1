"""`schedctl experiment run --insecure`: a local cluster without CURVE still runs, and says so."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from daemons.coordinator.testing import schedctl


def test_insecure_run_works_and_is_recorded(tmp_path: Path) -> None:
    out = subprocess.run([schedctl(), "experiment", "run", "--insecure", "--duration", "3", "--rps", "2", "--cv", "1",
                          "--nodes", "2", "--scheduler", "centralized", "--name", "plain",
                          "--results-dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run,) = tmp_path.glob("plain_centralized_*")
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["curve"] is False and manifest["spec"]["experiment"]["insecure"] is True
    assert "CURVE on" not in (run / "daemons" / "coordinator.log").read_text()
    assert not list(run.rglob("*.key_secret"))
