"""Test kit: run a real emulator process on loopback and make sure it is gone afterwards.

    from daemons.emulator.testing import start_emulator

    with start_emulator("facebook/opt-125m", gpu="a100-80gb") as emu:
        httpx.post(f"{emu.base_url}/generate", json={"inputs": "hi"})

The process is `schedctl start emulator ...` (the console script next to the running
interpreter), on a free port, with no load time unless asked (`checkpoint_tier="gpu"`,
`init_seconds=0`).  By default the context waits for `/health` to answer 200; with
`wait="listening"` it returns as soon as the port answers at all (to watch the 503s of
the load phase), with `wait="none"` at once.  On exit the process gets SIGTERM, then
SIGKILL after `stop_timeout` seconds, and is always reaped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

Wait = Literal["healthy", "listening", "none"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def schedctl_command() -> list[str]:
    """How to run `schedctl`: the console script beside this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("schedctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]


@dataclass
class RunningEmulator:
    """One emulator process; `base_url` is what a TGI client takes."""

    base_url: str
    port: int
    process: subprocess.Popen[bytes]
    _stderr: IO[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def wait_for(emu: RunningEmulator, wait: Wait, timeout: float) -> None:
    """Block until the emulator is `wait` (healthy / listening), or raise RuntimeError."""
    if wait == "none":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.process.poll() is not None:
            raise RuntimeError(f"emulator exited with {emu.process.returncode}: {emu.stderr_text()[-2000:]}")
        status = http_status(f"{emu.base_url}/health")
        if status == 200 or (wait == "listening" and status is not None):
            return
        time.sleep(0.05)
    raise RuntimeError(f"emulator not {wait} after {timeout} s: {emu.stderr_text()[-2000:]}")


def emulator_args(
    model_id: str, gpu: str, port: int, host: str, init_seconds: float, checkpoint_tier: str,
    extra_args: Sequence[str],
) -> list[str]:
    return [
        *schedctl_command(), "start", "emulator", "--model-id", model_id, "--gpu", gpu,
        "--port", str(port), "--hostname", host, "--init-seconds", str(init_seconds),
        "--checkpoint-tier", checkpoint_tier, *extra_args,
    ]


def _spawn(args: list[str], port: int, host: str, env: dict[str, str] | None,
           stderr: IO[bytes]) -> RunningEmulator:
    stderr.seek(0)
    stderr.truncate()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                            env={**os.environ, **(env or {})})
    return RunningEmulator(f"http://{host}:{port}", port, proc, stderr)


@contextlib.contextmanager
def start_emulator(
    model_id: str = "facebook/opt-125m",
    gpu: str = "a100-80gb",
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    init_seconds: float = 0.0,
    checkpoint_tier: str = "gpu",
    extra_args: Sequence[str] = (),
    wait: Wait = "healthy",
    timeout: float = 30.0,
    stop_timeout: float = 10.0,
    env: dict[str, str] | None = None,
) -> Iterator[RunningEmulator]:
    """Start `schedctl start emulator` on a free loopback port; stop and reap it on exit."""
    with tempfile.TemporaryFile() as stderr:
        for attempt in range(3):
            chosen = port if port is not None else free_port(host)
            args = emulator_args(model_id, gpu, chosen, host, init_seconds, checkpoint_tier, extra_args)
            emu = _spawn(args, chosen, host, env, stderr)
            try:
                wait_for(emu, wait, timeout)
                break
            except RuntimeError:
                emu.stop(stop_timeout)
                if port is None and "already in use" in emu.stderr_text() and attempt < 2:
                    continue  # another process took the port between free_port() and bind()
                raise
        try:
            yield emu
        finally:
            emu.stop(stop_timeout)


def launcher_command() -> list[str]:
    """How to run `schedctl-tgi-launcher`: the console script beside this interpreter, else `python -m`."""
    script = Path(sys.executable).with_name("schedctl-tgi-launcher")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemons.emulator.launcher"]


@contextlib.contextmanager
def start_launcher(
    args: Sequence[str] = ("--model-id", "facebook/opt-125m"),
    *,
    host: str = "127.0.0.1",
    wait: Wait = "healthy",
    timeout: float = 30.0,
    stop_timeout: float = 15.0,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[RunningEmulator]:
    """`schedctl-tgi-launcher ARGS --port P --hostname HOST` (fast load unless ARGS say otherwise),
    on a free port; SIGTERM, then SIGKILL, and reaped on exit. `preexec_fn` runs in the child
    (e.g. to lower its file-descriptor limit)."""
    with tempfile.TemporaryFile() as stderr:
        for attempt in range(3):
            port = free_port(host)
            argv = [*launcher_command(), "--init-seconds", "0", "--checkpoint-tier", "gpu", *args,
                    "--port", str(port), "--hostname", host]
            stderr.seek(0)
            stderr.truncate()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                                    env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
            emu = RunningEmulator(f"http://{host}:{port}", port, proc, stderr)
            try:
                wait_for(emu, wait, timeout)
                break
            except RuntimeError:
                emu.stop(stop_timeout)
                if "already in use" in emu.stderr_text() and attempt < 2:
                    continue  # another process took the port between free_port() and bind()
                raise
        try:
            yield emu
        finally:
            emu.stop(stop_timeout)
