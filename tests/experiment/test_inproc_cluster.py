"""`schedctl experiment run --backend emulator-inproc`: the local cluster's nodes serve their emulated
GPUs in their own processes (one process per node), and the run is the HTTP emulator's run in every
file: the same checks as the default smoke run (tests/experiment/test_experiment_run.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psutil
import pytest

from tests.experiment.test_experiment_run import check_run, our_processes, run


def started(argv: list[str]) -> str:
    """The daemon a `schedctl start DAEMON ...` command line starts ("" for any other)."""
    return argv[argv.index("start") + 1] if "start" in argv[:-1] else ""


def count_daemons(stop: threading.Event, seen: dict[str, int]) -> None:
    """The most node agents and emulator processes alive at once while the run lasts."""
    while not stop.wait(0.5):
        kinds: dict[str, int] = {"node": 0, "emulator": 0}
        for proc in psutil.Process().children(recursive=True):
            try:
                kind = started(proc.cmdline())
            except psutil.Error:
                continue
            if kind in kinds:
                kinds[kind] += 1
        for kind, n in kinds.items():
            seen[kind] = max(seen.get(kind, 0), n)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_both_arms_run_on_in_process_backends(tmp_path: Path) -> None:
    before = our_processes()
    seen: dict[str, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=count_daemons, args=(stop, seen), daemon=True)
    watcher.start()
    try:
        out = run(["--duration", "8", "--rps", "2", "--cv", "2", "--name", "inproc", "--seed", "7",
                   "--backend", "emulator-inproc", "--results-dir", str(tmp_path / "results")], tmp_path)
    finally:
        stop.set()
        watcher.join()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    dirs = {d.name.split("_")[1]: d for d in (tmp_path / "results").iterdir()}
    assert set(dirs) == {"centralized", "gossip", "compare"}
    central = check_run(dirs["centralized"], "centralized")
    gossip = check_run(dirs["gossip"], "gossip")
    assert [r["scheduled_s"] for r in central] == [r["scheduled_s"] for r in gossip]
    manifest = json.loads((dirs["gossip"] / "manifest.json").read_text())
    assert manifest["spec"]["experiment"]["backend"] == "emulator-inproc"  # --from repeats it
    # One process per node: four node agents, no emulator process at any time.
    assert seen == {"node": 4, "emulator": 0}, seen
    assert our_processes() <= before
