"""A node with `backend = "tgi"` launches and supervises its instances through
`text-generation-launcher` (here the emulator's `schedctl-tgi-launcher` installed under that
name, as a deployment without GPUs does), and releases every backend connection on every path."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from daemons.core.messages import Infer
from daemons.emulator.testing import launcher_command
from daemons.node.config import write_node_config
from daemons.node.testing import Client, free_endpoint, running_node, schedctl

SMALL = "facebook/opt-125m"
HERE = Path(__file__).resolve().parent


@pytest.fixture
def tgi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`text-generation-launcher` on PATH = schedctl-tgi-launcher (the node tells it its GPU,
    checkpoint tier and init time through the environment: fast loads here)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "text-generation-launcher").symlink_to(launcher_command()[0])
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    yield bindir


def serve(client: Client, rid: str, tokens: int = 5) -> list[str]:
    client.send(Infer(rid, SMALL, "one two three", tokens), rid)
    got = client.until({"done", "error"}, timeout_s=60)
    # Progress beats come once a second while the request is held (a slow cold start under load).
    return [e.type for e in got if e.type != "progress"]


def test_tgi_backend_serves_through_text_generation_launcher(tmp_path: Path, tgi_on_path: Path) -> None:
    with running_node(tmp_path, backend="tgi", models=[SMALL], checkpoint_tier="gpu") as node:
        client = Client(node.bind)
        assert serve(client, "r1") == ["first_token", "done"], node.log()
        assert serve(client, "r2") == ["first_token", "done"]
        log = node.log()
        assert "launching facebook/opt-125m: text-generation-launcher --model-id facebook/opt-125m" in log
        assert "--num-shard 1" in log and "--cuda-memory-fraction" in log
        launcher, *_ = node.children()  # the launcher, and its webserver below it
        assert Path(launcher.cmdline()[1]).name == "text-generation-launcher" or \
            "text-generation-launcher" in " ".join(launcher.cmdline())
        client.close()


def test_tgi_backend_without_the_launcher_is_one_clear_line(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no text-generation-launcher there
    config = write_node_config(tmp_path / "n.toml", name="n", bind=free_endpoint(), backend="tgi",
                               gpu_backend="emulated", publish_to=[], models=[SMALL])
    out = subprocess.run([schedctl(), "start", "node", "--config", str(config)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "text-generation-launcher is not an executable on PATH" in lines[0]
    assert "tgi_launcher" in lines[0] and "schedctl-tgi-launcher" in lines[0]


def test_a_port_taken_before_the_launcher_binds_it_is_retried_on_a_new_port(tmp_path: Path,
                                                                           tgi_on_path: Path) -> None:
    marker = tmp_path / "squatter.pid"
    launcher = [sys.executable, str(HERE / "squat_then_launch.py"), "{port}", str(marker), "--",
                "text-generation-launcher", "--model-id", "{model}", "--port", "{port}", "--hostname", "127.0.0.1"]
    try:
        with running_node(tmp_path, backend="tgi", models=[SMALL], checkpoint_tier="gpu", launcher=launcher) as node:
            client = Client(node.bind)
            assert serve(client, "r1") == ["first_token", "done"], node.log()
            log = node.log()
            assert "launching again on port" in log, log
            assert marker.exists()  # the squatter did take the first port
            client.close()
    finally:
        if marker.exists():
            pid = int(marker.read_text())
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)  # not our child: init reaps it


def node_fds(node_pid: int) -> int:
    return int(psutil.Process(node_pid).num_fds())


def settled_fds(node_pid: int, timeout_s: float = 20.0) -> int:
    """The node's descriptor count once it has stopped changing for a second (streams that were
    cut are closed asynchronously, just after their error is sent)."""
    deadline = time.monotonic() + timeout_s
    last, since = node_fds(node_pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < 1.0:
        time.sleep(0.1)
        now = node_fds(node_pid)
        if now != last:
            last, since = now, time.monotonic()
    return last


def node_rss(node_pid: int) -> int:
    return int(psutil.Process(node_pid).memory_info().rss)


def storm(client: Client, tag: str, waves: int, size: int) -> None:
    """`waves` × `size` streams that fail at the backend (more tokens than the context holds: an
    in-band validation error; under load some hit the timeout first), then as many cut by the
    node's request timeout while streaming (cancelled)."""
    for kind, tokens, allowed in (("fail", 100_000, {"validation", "timeout"}), ("cut", 2000, {"timeout"})):
        for wave in range(waves):
            for i in range(size):
                rid = f"{tag}-{kind}-{wave}-{i}"
                client.send(Infer(rid, SMALL, "one two", tokens), rid)
            codes = {client.until({"done", "error"}, timeout_s=60)[-1].body.code for _ in range(size)}
            assert codes <= allowed, (kind, codes)


def test_failing_and_cancelled_streams_release_every_connection(tmp_path: Path) -> None:
    """2,000 failing and cancelled streams (`storm`) after a warm-up of 400: the node's file
    descriptors and memory come back to baseline, and it still serves and says so."""
    with running_node(tmp_path, models=[SMALL], preload=[SMALL], checkpoint_tier="gpu",
                      request_timeout_s=1.5) as node:
        client = Client(node.bind)
        deadline = time.monotonic() + 30
        while [m["state"] for m in client.status().nodes[0]["models"]] != ["ready"]:
            assert time.monotonic() < deadline, node.log()
            time.sleep(0.1)
        pid = node.proc.pid
        storm(client, "warm", 2, 100)  # allocator pools, caches and lazy imports settle
        base_fds, base_rss = settled_fds(pid), node_rss(pid)
        storm(client, "storm", 8, 125)
        fds = settled_fds(pid)
        print("FDS", base_fds, fds, "RSS", base_rss / 2**20, node_rss(pid) / 2**20)
        assert fds <= base_fds + 4, (base_fds, fds)
        grown = node_rss(pid) - base_rss
        assert grown < 16 * 2**20, f"RSS grew {grown / 2**20:.1f} MiB over 2,000 streams"
        assert serve(client, "after") == ["first_token", "done"], node.log()
        models = client.status().nodes[0]["models"]
        assert [(m["model"], m["state"]) for m in models] == [(SMALL, "ready")]
        client.close()
