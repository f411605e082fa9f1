"""The node agent as a real process on loopback, with real emulator instances behind it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import msgpack
import psutil
import pytest
import zmq

from daemons.bus import decode, make_socket
from daemons.core.messages import Infer, NodeState
from daemons.node.testing import Client, free_endpoint, nvml_works, running_node, schedctl

SMALL = "facebook/opt-125m"
LLAMA2 = "meta-llama/Llama-2-7b-hf"
LLAMA3 = "meta-llama/Llama-3.1-8B-Instruct"


def infer(client: Client, rid: str, model: str = SMALL, tokens: int = 8) -> list[str]:
    client.send(Infer(rid, model, "hello " * 10, tokens), rid)
    got = client.until({"done", "error"}, timeout_s=60)
    assert all(env.id == rid for env in got)
    return [env.type for env in got]


def test_cold_start_then_serve(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL], checkpoint_tier="dram") as node:
        client = Client(node.bind)
        client.send(Infer("r1", SMALL, "one two three", 5), "r1")
        got = client.until({"done", "error"}, timeout_s=60)
        # A Progress comes about once a second while the node holds it (here: if the load takes that long).
        assert [e.type for e in got if e.type != "progress"] == ["first_token", "done"], node.log()
        done = got[-1].body
        assert (done.action, done.tokens, done.finish_reason) == ("COLD_START", 5, "length")
        assert done.node == "node-0"
        assert done.timings["ttft_s"] <= done.timings["total_s"]
        client.send(Infer("r2", SMALL, "one two three", 3), "r2")
        second = client.until({"done", "error"}, timeout_s=30)[-1].body
        assert (second.action, second.tokens) == ("SERVE", 3)
        models = client.status().nodes[0]["models"]
        assert [(m["model"], m["state"]) for m in models] == [(SMALL, "ready")]
        client.close()


def test_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL]) as node:
        client = Client(node.bind)
        client.send(Infer("r1", "nobody/no-such-model", "x", 3), "r1")
        err = client.until({"done", "error"})[-1].body
        assert err.code == "unknown_model" and SMALL in err.message
        client.close()


def test_a_model_that_does_not_fit_evicts_the_idle_one(tmp_path: Path) -> None:
    # On a 24 GiB GPU the two 7-8B models (with their KV budgets) do not fit together.
    with running_node(tmp_path, models=[LLAMA2, LLAMA3], gpu="a10g-24gb", checkpoint_tier="gpu") as node:
        client = Client(node.bind)
        assert infer(client, "a", LLAMA2)[-1] == "done", node.log()
        assert infer(client, "b", LLAMA3)[-1] == "done", node.log()
        state = client.status().nodes[0]
        assert [m["model"] for m in state["models"]] == [LLAMA3]
        assert state["gpus"][0]["memory_used"] <= state["gpus"][0]["memory_total"]
        assert "evicting " + LLAMA2 in node.log()
        client.close()


def test_killed_instance_fails_in_flight_requests_fast(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL], checkpoint_tier="gpu") as node:
        client = Client(node.bind)
        assert infer(client, "warm")[-1] == "done"
        client.send(Infer("long", SMALL, "x " * 10, 2000), "long")
        assert client.recv(30).type == "first_token"
        (instance,) = node.children()
        started = time.monotonic()
        os.kill(instance.pid, signal.SIGKILL)
        err = client.until({"done", "error"}, timeout_s=10)[-1].body
        assert err.code in ("backend_died", "backend_unreachable"), err
        assert time.monotonic() - started < 5
        # the node notices the death within a couple of seconds, and the next request loads it again
        deadline = time.monotonic() + 3.0
        while client.status().nodes[0]["models"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.status().nodes[0]["models"] == []
        assert "exited with signal SIGKILL" in node.log()
        assert infer(client, "again")[-1] == "done"
        client.close()


def test_state_is_published_with_queue_and_memory(tmp_path: Path) -> None:
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB)
    address = free_endpoint()
    sub.bind(address)
    with running_node(tmp_path, models=[SMALL], publish_to=[address], publish_interval_s=0.2) as node:
        client = Client(node.bind)
        assert infer(client, "r")[-1] == "done"
        deadline = time.monotonic() + 10
        seen: NodeState | None = None
        while time.monotonic() < deadline:
            if sub.poll(500):
                body = decode(sub.recv()).body
                if isinstance(body, NodeState) and body.models:
                    seen = body
                    break
        assert seen is not None and seen.node == "node-0" and seen.gpu_backend == "emulated"
        assert seen.models[0].model == SMALL and seen.gpus[0].memory_used == seen.models[0].memory_bytes
        assert {c.model for c in seen.catalog} == {SMALL}
        client.close()
    sub.close()
    ctx.term()


HOSTILE: list[list[bytes]] = [
    [os.urandom(64)],
    [b""],
    [msgpack.packb([1, "infer", "x", "y", {"request_id": 42}])],
    [msgpack.packb([1, "infer", "x", "y", {"request_id": "r"}])[:-2]],
    [msgpack.packb([9, "infer", "x", "y", {}])],
    [msgpack.packb([1, "infer", "x", "y", msgpack.ExtType(1, b"boom")])],
    [b"a", b"b", b"c"],
]


def test_hostile_frames_are_dropped_and_the_node_keeps_answering(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL]) as node:
        client = Client(node.bind)
        for frames in HOSTILE:
            client.send_raw(frames)
        client.sock.send(b"\x00" * (2 << 20))  # over MAXMSGSIZE: the node disconnects us
        time.sleep(0.5)
        other = Client(node.bind)
        assert other.status().role == "node"
        assert infer(other, "after")[-1] == "done"
        log = node.log()
        assert log.count("dropped malformed frame") >= len(HOSTILE) - 2
        assert node.proc.poll() is None
        other.close()
        client.close()


def test_killing_the_node_takes_its_instances_with_it(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL]) as node:
        client = Client(node.bind)
        assert infer(client, "r")[-1] == "done"
        kids = node.children()
        assert kids
        node.proc.kill()
        node.proc.wait()
        _, alive = psutil.wait_procs(kids, timeout=10)
        assert alive == []
        client.close()


def test_node_gpu_says_which_probe_and_why() -> None:
    out = subprocess.run([schedctl(), "node", "gpu"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first.startswith("backend: nvml") or "using emulated a100-80gb" in first
    assert "gpu 0:" in out.stdout


def test_bad_config_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n"\ngpu = "tpu-v9"\n')
    out = subprocess.run([schedctl(), "start", "node", "--config", str(bad)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and "a100-80gb" in out.stderr
    assert "Traceback" not in out.stderr


def test_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL]) as node:
        cfg = tmp_path / "dup.toml"
        cfg.write_text(f'[node]\nname = "dup"\nbind = "{node.bind}"\npublish_to = []\n'
                       'gpu_backend = "emulated"\n')
        out = subprocess.run([schedctl(), "start", "node", "--config", str(cfg)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 2 and "in use" in out.stderr and "--bind" in out.stderr
        assert "Traceback" not in out.stderr


@pytest.mark.parametrize("bad", ['gpu_backend = "cuda"', 'colour = "red"', 'kv_tokens = "many"'])
def test_bad_values_name_the_key(tmp_path: Path, bad: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f"[node]\n{bad}\n")
    out = subprocess.run([schedctl(), "start", "node", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and bad.split()[0] in out.stderr, out.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not nvml_works(), reason="no NVIDIA driver or GPU here: the NVML path runs on GPU machines")
def test_nvml_probe_reads_real_gpus() -> None:
    out = subprocess.run([schedctl(), "node", "gpu", "--gpu-backend", "nvml"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("backend: nvml")
    assert "GiB" in out.stdout.splitlines()[1]


@pytest.mark.skipif(nvml_works(), reason="this machine has a working NVIDIA driver")
def test_asking_for_nvml_without_a_driver_is_a_clear_error() -> None:
    out = subprocess.run([schedctl(), "node", "gpu", "--gpu-backend", "nvml"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and "gpu_backend = 'emulated'" in out.stderr and "Traceback" not in out.stderr


def test_a_retried_request_that_already_finished_is_answered_not_run_again(tmp_path: Path) -> None:
    with running_node(tmp_path, models=[SMALL], checkpoint_tier="gpu") as node:
        client = Client(node.bind)
        assert infer(client, "once")[-1] == "done"
        retry = Client(node.bind)
        retry.send(Infer("once", SMALL, "hello " * 10, 8), "once")
        got = retry.until({"done", "error"}, timeout_s=10)
        assert [e.type for e in got] == ["first_token", "done"] and got[-1].body.tokens == 8
        assert "answered from the completed cache" in node.log()
        assert node.log().count("serving once with") == 1
        retry.close()
        client.close()
