"""Test kit: run a real emulator process on loopback and make sure it is gone afterwards.

    from daemons.emulator.testing import start_emulator

    with start_emulator("facebook/opt-125m", gpu="a100-80gb") as emu:
        httpx.post(f"{emu.base_url}/generate", json={"inputs": "hi"})

The process is `schedctl start emulator ...` (a `DaemonProcess`, daemons/core/process.py),
on a free port, with no load time unless asked (`checkpoint_tier="gpu"`,
`init_seconds=0`).  By default the context waits for `/health` to answer 200; with
`wait="listening"` it returns as soon as the port answers at all (to watch the 503s of
the load phase), with `wait="none"` at once.  On exit the process gets SIGTERM, then
SIGKILL after `stop_timeout` seconds, and is always reaped.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from daemons.core.process import DaemonError, DaemonProcess, console_script, free_port, schedctl_executable

Wait = Literal["healthy", "listening", "none"]
ATTEMPTS = 3  # a port chosen free may be taken before the emulator binds it: try another


@dataclass
class RunningEmulator:
    """One emulator process (daemons/core/process.py); `base_url` is what a TGI client takes."""

    base_url: str
    port: int
    daemon: DaemonProcess

    @classmethod
    def start(cls, argv: Sequence[str], port: int, log_path: Path, host: str = "127.0.0.1",
              env: dict[str, str] | None = None, preexec_fn: Callable[[], None] | None = None) -> RunningEmulator:
        """Spawn `argv` (which serves on `port`); its stderr goes to `log_path`, stdout nowhere."""
        daemon = DaemonProcess(argv, name=f"emulator on port {port}", log_path=log_path, stdout=subprocess.DEVNULL,
                               env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
        return cls(f"http://{host}:{port}", port, daemon)

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.daemon.popen

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def stderr_text(self) -> str:
        """Everything the process wrote to stderr so far."""
        return self.daemon.log()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        return self.daemon.stop(timeout)


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
    """Block until the emulator is `wait` (healthy / listening), or raise DaemonError."""
    if wait == "none":
        return

    def ready() -> bool:
        status = http_status(f"{emu.base_url}/health")
        return status == 200 or (wait == "listening" and status is not None)

    emu.daemon.wait_ready(ready, timeout)


def emulator_args(
    model_id: str, gpu: str, port: int, host: str, init_seconds: float, checkpoint_tier: str,
    extra_args: Sequence[str],
) -> list[str]:
    return [
        schedctl_executable(), "start", "emulator", "--model-id", model_id, "--gpu", gpu,
        "--port", str(port), "--hostname", host, "--init-seconds", str(init_seconds),
        "--checkpoint-tier", checkpoint_tier, *extra_args,
    ]


@contextlib.contextmanager
def _running(argv_for: Callable[[int], list[str]], port: int | None, host: str, wait: Wait, timeout: float,
             stop_timeout: float, env: dict[str, str] | None,
             preexec_fn: Callable[[], None] | None = None) -> Iterator[RunningEmulator]:
    """`argv_for(port)` on `port` (None: a free one, another if it was taken meanwhile); stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="emulator-") as tmp:
        for attempt in range(ATTEMPTS):
            chosen = port if port is not None else free_port(host)
            emu = RunningEmulator.start(argv_for(chosen), chosen, Path(tmp) / "stderr.log", host, env, preexec_fn)
            try:
                wait_for(emu, wait, timeout)
                break
            except DaemonError:
                emu.stop(stop_timeout)
                if port is None and "already in use" in emu.stderr_text() and attempt < ATTEMPTS - 1:
                    continue  # another process took the port between free_port() and bind()
                raise
        try:
            yield emu
        finally:
            emu.stop(stop_timeout)


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
    def argv(chosen: int) -> list[str]:
        return emulator_args(model_id, gpu, chosen, host, init_seconds, checkpoint_tier, extra_args)

    with _running(argv, port, host, wait, timeout, stop_timeout, env) as emu:
        yield emu


def launcher_command() -> list[str]:
    """How to run `schedctl-tgi-launcher`: the console script of this installation."""
    return [console_script("schedctl-tgi-launcher")]


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
    def argv(port: int) -> list[str]:
        return [*launcher_command(), "--init-seconds", "0", "--checkpoint-tier", "gpu", *args,
                "--port", str(port), "--hostname", host]

    with _running(argv, None, host, wait, timeout, stop_timeout, env, preexec_fn) as emu:
        yield emu
