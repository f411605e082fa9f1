"""`schedctl-tgi-launcher`: text-generation-launcher's flags and behaviour in front of the emulator.

TGI's launcher (`launcher/src/main.rs`, docs `reference/launcher.md`): every flag also reads its
upper-case environment variable; it waits for its server, forwards SIGTERM, exits with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import httpx2
import psutil

from daemons.core.process import free_port
from daemons.emulator.testing import launcher_command, start_launcher

TGI_FLAGS = [  # real TGI flags the emulator has no use for, in both boolean and valued forms
    "--num-shard", "1", "--sharded", "false", "--trust-remote-code", "--shard-uds-path", "/tmp/tgi-test",
    "--master-port", "29555", "--dtype", "float16", "--json-output", "--usage-stats", "off",
    "--revision", "main", "--max-waiting-tokens", "20", "--huggingface-hub-cache", "/tmp/hf",
]


def wait_gone(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    return proc.wait(timeout)


def test_accepts_tgi_flags_and_environment() -> None:
    flags = ["--max-input-length", "100", "--max-total-tokens", "200", "--max-batch-prefill-tokens", "300",
             "--max-concurrent-requests", "7", *TGI_FLAGS]
    with start_launcher(flags, env={"MODEL_ID": "facebook/opt-125m"}) as emu:
        info = httpx2.get(f"{emu.base_url}/info", timeout=10).json()
        assert (info["model_id"], info["max_input_tokens"], info["max_total_tokens"],
                info["max_concurrent_requests"]) == ("facebook/opt-125m", 100, 200, 7)
        body = {"inputs": "one two three", "parameters": {"max_new_tokens": 3}}
        assert httpx2.post(f"{emu.base_url}/generate", json=body, timeout=30).json()["details"]["generated_tokens"] == 3
        (server,) = psutil.Process(emu.pid).children()  # the webserver is the launcher's child
        emu.process.send_signal(signal.SIGTERM)
        assert wait_gone(emu.process) == 0, emu.stderr_text()  # forwarded, clean shutdown
        assert not psutil.pid_exists(server.pid) or server.status() == psutil.STATUS_ZOMBIE


def test_refuses_a_flag_tgi_does_not_have() -> None:
    out = subprocess.run([*launcher_command(), "--model-id", "facebook/opt-125m", "--no-such-flag", "1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no-such-flag" in lines[0], out.stderr


def test_exits_with_its_server() -> None:
    with start_launcher() as emu:
        (server,) = psutil.Process(emu.pid).children()
        os.kill(server.pid, signal.SIGKILL)
        assert wait_gone(emu.process) == 1
        assert "Webserver Crashed" in emu.stderr_text()


def test_a_port_in_use_ends_the_launcher_with_an_error() -> None:
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        began = time.monotonic()
        out = subprocess.run([*launcher_command(), "--model-id", "facebook/opt-125m", "--port", str(port),
                              "--hostname", "127.0.0.1", "--init-seconds", "0"],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "already in use" in out.stderr, out.stderr
    assert time.monotonic() - began < 60
