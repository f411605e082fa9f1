"""Launching a daemon process and stopping it: the one lifecycle every launcher shares
(the local cluster, cli/experiment/cluster.py, and the test kits daemons/*/testing.py).

The life of a `DaemonProcess`:

1. **spawn** (the constructor): `argv` starts at once, in a process group of its own, with
   stdout and stderr appended to (or replacing) its log file, stdin from /dev/null unless
   asked, and the listening sockets of `hand_down` inherited (daemons/bus/activation.py
   says which environment tells the daemon about them). The launcher's copies of those
   sockets are closed here: the daemon holds the ports from now on. Its own process group
   means a terminal's Ctrl-C reaches the launcher alone, which then tears down in order,
   and that whatever the daemon forks can be found and reaped as a group.
2. **ready** (`wait_ready`): a predicate supplied by the caller (its status socket answers,
   its /health says 200) is polled until it holds. The process exiting first, or the
   deadline passing, raises `DaemonError` with the exit status and the end of the log.
3. **pause / resume**: SIGSTOP and SIGCONT (a fault injector's freeze, a test's stall).
4. **stop**: SIGCONT first (a stopped process never acts on SIGTERM), then SIGTERM, a wait
   of `timeout_s`, SIGKILL if it is still there. Then its leftovers: every descendant seen
   at the SIGTERM (a backend instance may live in a session of its own) and whatever
   remains in its process group get `grace_s` to exit by themselves, then SIGKILL. The
   group is killed while the daemon is still an unreaped zombie, so its number cannot
   have been reused. `stop` returns the exit status (negative: the signal that ended it)
   and may be called again (it only returns the status).

Also here: `schedctl_executable()` (where the `schedctl` console script is, `console_script`),
`free_port()` / `free_endpoint()` (racy: a launcher that can should hand a listening
socket down instead) and `host_port()`.

Standard library only (daemons.core is the ground floor); the descendant walk reads Linux's
/proc and finds nothing elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

from daemons.core.errors import SchedctlError

LOG_TAIL_CHARS = 2000  # how much of a log an error message carries
POLL_S = 0.05


class DaemonError(SchedctlError):
    """A daemon exited before it was ready, or did not become ready in time."""


def console_script(name: str) -> str:
    """A console script of this installation: beside the running interpreter (the venv we run
    from), else the one on PATH, else the bare name (the exec error then names it)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def schedctl_executable() -> str:
    """The `schedctl` executable: the one place that knows where it is."""
    return console_script("schedctl")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` nobody listened on a moment ago (bind port 0, read it, close).
    Racy: another process may take it before the daemon binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_endpoint(host: str = "127.0.0.1") -> str:
    """`tcp://HOST:PORT` with a `free_port()` (as racy)."""
    return f"tcp://{host}:{free_port(host)}"


def host_port(endpoint: str) -> tuple[str, str]:
    """`tcp://HOST:PORT` -> (HOST, PORT), both as written (the port may be `*`)."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    return host, port


def describe_exit(code: int) -> str:
    """A Popen return code in words: `exit code 1`, `signal SIGKILL`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class DaemonProcess:
    """One daemon as a child process; see the module docstring for its lifecycle."""

    def __init__(self, argv: Sequence[str], *, name: str = "", log_path: Path | None = None, append: bool = False,
                 env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
                 hand_down: Sequence[socket.socket | int] = (), stdin: int | None = subprocess.DEVNULL,
                 stdout: int | None = None, preexec_fn: Callable[[], None] | None = None) -> None:
        """`log_path`: where stdout and stderr go (None: nowhere); `stdout=subprocess.PIPE` keeps
        stdout apart for the caller to read (`popen.stdout`). `hand_down`: listening sockets (or
        descriptors) the daemon inherits and the launcher closes once it has them."""
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        fds = [h if isinstance(h, int) else h.fileno() for h in hand_down]
        try:
            with _log_file(log_path, append) as log:
                self.popen: subprocess.Popen[bytes] = subprocess.Popen(
                    list(argv), stdin=stdin, stdout=log if stdout is None else stdout, stderr=log,
                    env=None if env is None else dict(env), cwd=cwd, pass_fds=fds, process_group=0,
                    preexec_fn=preexec_fn)
        finally:
            for held in hand_down:  # the daemon has its own copies (or never will)
                if isinstance(held, int):
                    os.close(held)
                else:
                    held.close()
        self._start = _start_time(self.popen.pid)  # tells our process group from a later one of the same number
        self._leftovers: list[tuple[int, int]] = []  # descendants seen at the SIGTERM: (pid, start time)
        self._terminated = self._stopped = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def running(self) -> bool:
        return self.popen.poll() is None

    # ----- ready -----------------------------------------------------------------------
    def wait_ready(self, ready: Callable[[], bool], timeout_s: float, poll_s: float = POLL_S) -> None:
        """Poll `ready()` until it holds; DaemonError if the process exits first or `timeout_s` passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_running("before it was ready")
            if ready():
                return
            if time.monotonic() > deadline:
                raise DaemonError(f"{self.name} did not become ready within {timeout_s:g} s{self._tail()}")
            time.sleep(poll_s)

    def check_running(self, when: str = "") -> None:
        """DaemonError (exit status, end of the log) if the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise DaemonError(f"{self.name} exited with {describe_exit(code)}{' ' + when if when else ''}"
                              f"{self._tail()}")

    def _tail(self) -> str:
        text = self.log()[-LOG_TAIL_CHARS:]
        return f"; the end of its log ({self.log_path}):\n{text}" if text else ""

    def log(self) -> str:
        """The whole log (stdout and stderr), also after the process stopped; "" without one."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    # ----- pause / resume ----------------------------------------------------------------
    def pause(self) -> None:
        self.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.send_signal(signal.SIGCONT)

    def send_signal(self, sig: int) -> None:
        """`sig` to the daemon (not its group), unless it has exited."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    # ----- stop --------------------------------------------------------------------------
    def terminate(self) -> None:
        """SIGCONT and SIGTERM, noting its descendants first; `stop` waits. Sent once."""
        if self._terminated or self.popen.poll() is not None:
            return
        self._terminated = True
        self._leftovers = descendants(self.pid)
        self.popen.send_signal(signal.SIGCONT)  # a paused process would never see the SIGTERM
        self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 15.0, grace_s: float = 10.0) -> int:
        """SIGTERM, `timeout_s` to exit, SIGKILL; its leftovers get `grace_s`, then SIGKILL.
        Returns the exit status; the process is reaped. Again: only the status."""
        if self._stopped:
            return self.popen.wait()
        self.terminate()
        if not _exited(self.pid, timeout_s):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _exited(self.pid, None)
        self._reap_leftovers([*self._leftovers, *self._group()], grace_s)
        self._stopped = True
        return self.popen.wait()

    def _group(self) -> list[tuple[int, int]]:
        """What is left in the daemon's process group. The number is ours while the daemon is an
        unreaped zombie, or while nobody else has its pid (not reused while the group has members)."""
        if self.popen.returncode is not None and _start_time(self.pid) not in (None, self._start):
            return []
        return _group_members(self.pid)

    def _reap_leftovers(self, procs: list[tuple[int, int]], grace_s: float) -> None:
        procs = [p for p in set(procs) if p[0] != self.pid]
        deadline = time.monotonic() + grace_s
        while procs and time.monotonic() < deadline:
            procs = [p for p in procs if _alive(*p)]
            if procs:
                time.sleep(POLL_S)
        for pid, start in procs:
            if _alive(pid, start):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all(daemons: Iterable[DaemonProcess], timeout_s: float = 15.0, grace_s: float = 10.0) -> None:
    """Stop several at once: every SIGTERM is sent before any wait (a teardown as long as the slowest)."""
    daemons = list(daemons)
    for d in daemons:
        d.terminate()
    deadline = time.monotonic() + timeout_s  # one for all: each has been on its way out since now
    for d in daemons:
        d.stop(max(0.0, deadline - time.monotonic()), grace_s)


@contextlib.contextmanager
def _log_file(path: Path | None, append: bool) -> Iterator[int | IO[bytes]]:
    if path is None:
        yield subprocess.DEVNULL
        return
    with open(path, "ab" if append else "wb") as log:  # the child has its own descriptor
        yield log


def _exited(pid: int, timeout_s: float | None) -> bool:
    """Wait until `pid` (our child) has exited, without reaping it (waitid WNOWAIT)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True  # already reaped
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)


# ----- /proc ------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields from the state on (the name, which may hold spaces, cut off)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rpartition(")")[2].split()


def proc_state(pid: int) -> str:
    """The process's state letter in /proc (R, S, T when stopped, Z...), "" when it is gone."""
    fields = _stat(pid)
    return fields[0] if fields else ""


def _all_stats() -> dict[int, list[str]]:
    stats = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
                stats[int(entry.name)] = fields
    return stats


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every living descendant of `pid`: (pid, start time), so a reused pid is never mistaken for it."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if stats[p][0] != "Z":
            found.append((p, int(stats[p][19])))
        todo += children.get(p, [])
    return found


def _start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def _group_members(pgid: int) -> list[tuple[int, int]]:
    return [(p, int(f[19])) for p, f in _all_stats().items() if int(f[2]) == pgid and f[0] != "Z"]


def _alive(pid: int, start: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == start
