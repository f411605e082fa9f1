"""Measured figures from real nodes: the action a node reports, and GPU compute utilisation.

A real node agent with real emulator instances, driven by the real load generator or a
socket client; the report is read through `schedctl experiment report`.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from daemons.bus import decode, make_socket
from daemons.core.messages import Infer, NodeState
from daemons.node.actions import served_action
from daemons.node.testing import Client, free_endpoint, nvml_works, running_node, schedctl

SMALL = "facebook/opt-125m"


def test_two_requests_for_one_cold_model_one_cold_start_one_served_while_loading(tmp_path: Path) -> None:
    """Both arrive together: the first starts the load (COLD_START); the second waits on
    that load, so it is recorded SERVE_LOADING, a miss, not a warm SERVE."""
    schedule = tmp_path / "schedule.csv"
    schedule.write_text("request_id,t_s,model,prompt_tokens,max_new_tokens\n"
                        f"a,0.0,{SMALL},8,4\nb,0.0,{SMALL},8,4\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # A slow load (2 s) keeps the second request waiting on it even on a loaded machine.
    with running_node(tmp_path, models=[SMALL], init_s=2.0) as node:
        done = subprocess.run(
            [schedctl(), "start", "loadgen", "--schedule", str(schedule), "--entry", node.bind,
             "--out", str(run_dir / "requests.csv"), "--timeout", "60", "--quiet"],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + node.log()
    with (run_dir / "requests.csv").open(newline="") as fh:
        rows = {r["request_id"]: r for r in csv.DictReader(fh)}
    assert {r["status"] for r in rows.values()} == {"ok"}, rows
    assert sorted(r["action"] for r in rows.values()) == ["COLD_START", "SERVE_LOADING"]

    # The report on that run: no request found its model ready, so the hit rate is 0.
    (run_dir / "manifest.json").write_text(json.dumps({"name": "cold", "scheduler": "gossip",
                                                       "planned_requests": 2}))
    (run_dir / "nodes.csv").write_text("t_s,node,memory_utilization,queue_depth\n")
    (run_dir / "events.csv").write_text("t_s,kind,target,detail\n")
    report = subprocess.run([schedctl(), "experiment", "report", str(run_dir), "--no-plots"],
                            capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "SERVE 0, SERVE_LOADING 1, COLD_START 1, MIGRATE 0" in report.stdout
    with (run_dir / "summary.csv").open(newline="") as fh:
        summary = next(csv.DictReader(fh))
    assert (summary["cache_hits"], summary["cache_hit_rate"], summary["serve_count"]) == ("0", "0", "0")


@pytest.fixture()
def states() -> Iterator[tuple[str, zmq.Socket[bytes]]]:
    """A SUB socket nodes publish their NodeState to, and its address."""
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB)
    address = free_endpoint()
    sub.bind(address)
    yield address, sub
    sub.close(0)
    ctx.term()


def wait_state(sub: zmq.Socket[bytes], want: str, timeout_s: float, check: object) -> NodeState:
    """The first published NodeState for which `check(state)` holds, within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: NodeState | None = None
    while time.monotonic() < deadline:
        if sub.poll(200):
            body = decode(sub.recv()).body
            if isinstance(body, NodeState):
                last = body
                if check(body):  # type: ignore[operator]
                    return body
    raise AssertionError(f"no NodeState with {want} within {timeout_s} s; last: {last}")


def test_published_gpu_utilization_is_compute_not_memory(
        tmp_path: Path, states: tuple[str, zmq.Socket[bytes]]) -> None:
    address, sub = states
    with running_node(tmp_path, models=[SMALL], preload=[SMALL], publish_to=[address],
                      publish_interval_s=0.2) as node:
        # Loaded and idle: memory in use, compute idle.
        idle = wait_state(sub, "the model ready", 60, lambda s: any(m.state == "ready" for m in s.models))
        assert idle.gpus[0].memory_used > 0
        idle = wait_state(sub, "an idle GPU", 10, lambda s: s.gpu_utilization == 0.0)
        client = Client(node.bind)
        client.send(Infer("long", SMALL, "hello " * 10, 1500), "long")
        busy = wait_state(sub, "a busy GPU", 30, lambda s: s.in_flight and (s.gpu_utilization or 0) >= 0.5)
        assert busy.gpus[0].utilization == busy.gpu_utilization  # one GPU: its reading is the node's
        assert busy.gpus[0].memory_used == idle.gpus[0].memory_used  # memory did not move; compute did
        got = client.until({"done", "error"}, timeout_s=60)
        assert got[-1].type == "done", node.log()
        # Within a couple of seconds of the last step the busy fraction falls back to 0.
        wait_state(sub, "the GPU idle again", 10, lambda s: not s.in_flight and s.gpu_utilization == 0.0)
        client.close()
    with open(node.log_path) as fh:
        assert "Traceback" not in fh.read()


def test_served_action_labels() -> None:
    assert served_action("SERVE", cold=True, ready_on_arrival=False) == "COLD_START"
    assert served_action("SERVE", cold=False, ready_on_arrival=False) == "SERVE_LOADING"
    assert served_action("SERVE", cold=False, ready_on_arrival=True) == "SERVE"
    assert served_action("MIGRATE", cold=False, ready_on_arrival=True) == "MIGRATE"
    assert served_action("MIGRATE", cold=False, ready_on_arrival=False) == "SERVE_LOADING"
    assert served_action("", cold=False, ready_on_arrival=True) == "SERVE"  # gossip: no plan


@pytest.mark.gpu
@pytest.mark.skipif(not nvml_works(), reason="no NVIDIA driver or GPU here: the NVML path runs on GPU machines")
def test_nvml_node_publishes_nvml_compute_utilization(
        tmp_path: Path, states: tuple[str, zmq.Socket[bytes]]) -> None:
    import pynvml

    address, sub = states
    with running_node(tmp_path, models=[SMALL], gpu_backend="nvml", publish_to=[address],
                      publish_interval_s=0.2):
        state = wait_state(sub, "a reading", 30, lambda s: s.gpus)
    assert state.gpu_backend == "nvml" and state.gpu_utilization is not None
    assert 0.0 <= state.gpu_utilization <= 1.0
    assert state.gpu_utilization == pytest.approx(sum(g.utilization for g in state.gpus) / len(state.gpus), abs=1e-4)
    pynvml.nvmlInit()
    try:
        names = [str(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)))
                 for i in range(pynvml.nvmlDeviceGetCount())]
    finally:
        pynvml.nvmlShutdown()
    assert [g.name for g in state.gpus] == names
