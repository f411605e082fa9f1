"""DaemonProcess on real subprocesses: readiness, early exits, pause, escalation and reaping."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from daemons.core.process import (
    DaemonError,
    DaemonProcess,
    describe_exit,
    free_endpoint,
    free_port,
    host_port,
    proc_state,
    schedctl_executable,
    stop_all,
)

# Says it is up (a file appears), then sleeps; SIGTERM ends it with exit code 0.
POLITE = """
import signal, sys, time, pathlib
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
pathlib.Path(sys.argv[1]).write_text("up")
while True:
    time.sleep(0.05)
"""
# Ignores SIGTERM: only SIGKILL ends it.
STUBBORN = """
import signal, sys, time, pathlib
signal.signal(signal.SIGTERM, signal.SIG_IGN)
pathlib.Path(sys.argv[1]).write_text("up")
while True:
    time.sleep(0.05)
"""
# Forks a child that ignores SIGTERM (in its own session when asked, as a node's backend instance),
# writes its pid, and exits on SIGTERM without waiting for it.
PARENT = """
import os, signal, subprocess, sys, time, pathlib
child = subprocess.Popen([sys.executable, "-c", "import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
                          "while True: time.sleep(0.05)"], start_new_session=sys.argv[2] == "session")
pathlib.Path(sys.argv[1]).write_text(str(child.pid))
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
while True:
    time.sleep(0.05)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def exists(path: Path) -> Callable[[], bool]:
    return path.exists


def state_becomes(pid: int, states: tuple[str, ...], timeout_s: float = 10.0) -> str:
    """The process's state once it is one of `states` (signals land asynchronously), else the last seen."""
    deadline = time.monotonic() + timeout_s
    while (state := proc_state(pid)) not in states and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


def test_a_polite_daemon_becomes_ready_and_stops_on_sigterm(tmp_path: Path) -> None:
    up = tmp_path / "up"
    with DaemonProcess(python(POLITE, str(up)), name="polite", log_path=tmp_path / "log") as d:
        d.wait_ready(exists(up), timeout_s=30)
        assert d.running() and os.getpgid(d.pid) == d.pid  # its own group: a terminal's Ctrl-C skips it
        started = time.monotonic()
        assert d.stop(timeout_s=10) == 0
        assert time.monotonic() - started < 5
    assert d.stop() == 0 and d.returncode == 0  # again: only the status


def test_sigterm_ignored_escalates_to_sigkill_after_the_timeout(tmp_path: Path) -> None:
    up = tmp_path / "up"
    d = DaemonProcess(python(STUBBORN, str(up)), log_path=tmp_path / "log")
    try:
        d.wait_ready(exists(up), timeout_s=30)
        started = time.monotonic()
        assert d.stop(timeout_s=0.5) == -signal.SIGKILL
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        d.stop()
    assert describe_exit(d.stop()) == "signal SIGKILL"


@pytest.mark.parametrize("where", ["group", "session"])
def test_stop_reaps_the_children_it_left(tmp_path: Path, where: str) -> None:
    """A child in the daemon's process group, or in a session of its own (seen before the SIGTERM),
    that outlives the daemon and ignores SIGTERM is killed after the grace period."""
    pid_file = tmp_path / "child"
    d = DaemonProcess(python(PARENT, str(pid_file), where), log_path=tmp_path / "log")
    try:
        d.wait_ready(exists(pid_file), timeout_s=30)
        child = int(pid_file.read_text())
        assert proc_state(child) in ("R", "S")
        assert d.stop(timeout_s=10, grace_s=0.5) == 0
    finally:
        d.stop()
    assert state_becomes(child, ("", "Z")) in ("", "Z"), f"child {child} outlived stop()"


def test_an_early_exit_is_an_error_with_the_status_and_the_log_tail(tmp_path: Path) -> None:
    code = "import sys; print('x' * 5000); print('error: port 80 is taken: pick another', flush=True); sys.exit(3)"
    d = DaemonProcess(python(code), name="early", log_path=tmp_path / "early.log")
    try:
        with pytest.raises(DaemonError) as err:
            d.wait_ready(lambda: False, timeout_s=30)
    finally:
        d.stop()
    text = str(err.value)
    assert text.startswith("early exited with exit code 3 before it was ready")
    assert "port 80 is taken" in text and str(tmp_path / "early.log") in text
    assert len(text) < 2300  # the tail, not the whole log
    assert "port 80 is taken" in d.log() and len(d.log()) > 5000


def test_a_daemon_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    up = tmp_path / "up"
    d = DaemonProcess(python(POLITE, str(up)), name="mute", log_path=tmp_path / "log")
    try:
        started = time.monotonic()
        with pytest.raises(DaemonError, match=r"^mute did not become ready within 0.5 s"):
            d.wait_ready(lambda: False, timeout_s=0.5)
        assert time.monotonic() - started < 5
        assert d.running()
    finally:
        assert d.stop() == 0


def test_pause_and_resume_show_in_proc(tmp_path: Path) -> None:
    up = tmp_path / "up"
    d = DaemonProcess(python(POLITE, str(up)))
    try:
        d.wait_ready(exists(up), timeout_s=30)
        d.pause()
        assert state_becomes(d.pid, ("T",)) == "T"
        d.resume()
        assert state_becomes(d.pid, ("R", "S")) in ("R", "S")
        d.pause()  # a paused daemon still stops on SIGTERM (SIGCONT comes first)
    finally:
        assert d.stop(timeout_s=10) == 0


def test_stop_all_sends_every_sigterm_before_waiting(tmp_path: Path) -> None:
    ups = [tmp_path / f"up{i}" for i in range(3)]
    ds = [DaemonProcess(python(STUBBORN, str(up))) for up in ups]
    try:
        for d, up in zip(ds, ups, strict=True):
            d.wait_ready(exists(up), timeout_s=30)
        started = time.monotonic()
        stop_all(ds, timeout_s=1.0)
        assert time.monotonic() - started < 2.5  # one timeout, not three
        assert [d.returncode for d in ds] == [-signal.SIGKILL] * 3
    finally:
        stop_all(ds)


def test_handed_down_sockets_reach_the_daemon_and_leave_the_launcher(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port, fd = sock.getsockname()[1], sock.fileno()
    code = ("import socket, sys; s = socket.socket(fileno=int(sys.argv[1])); "
            "print(s.getsockname()[1], sys.argv[2], flush=True)")
    d = DaemonProcess(python(code, str(fd), "hello"), log_path=tmp_path / "log", hand_down=[sock],
                      env={**os.environ, "X": "1"}, cwd=tmp_path)
    assert d.popen.wait(30) == 0 and d.stop() == 0
    assert d.log().split() == [str(port), "hello"]
    assert sock.fileno() == -1  # closed here: the port is the daemon's alone


def test_append_keeps_the_log_of_an_earlier_life(tmp_path: Path) -> None:
    log = tmp_path / "log"
    for word, append in (("one", False), ("two", True), ("three", False)):
        d = DaemonProcess(python(f"print({word!r})"), log_path=log, append=append)
        assert d.popen.wait(30) == 0 and d.stop() == 0
        if word == "two":
            assert log.read_text().split() == ["one", "two"]
    assert log.read_text().split() == ["three"]


def test_stdout_can_stay_apart_from_the_log(tmp_path: Path) -> None:
    code = "import sys; print('out'); print('err', file=sys.stderr)"
    d = DaemonProcess(python(code), log_path=tmp_path / "log", stdout=subprocess.PIPE)
    out, _ = d.popen.communicate(timeout=30)
    d.stop()
    assert out.split() == [b"out"] and d.log().split() == ["err"]


def test_endpoint_helpers() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it was free
    assert host_port(free_endpoint())[0] == "127.0.0.1"
    assert host_port("tcp://10.0.0.1:*") == ("10.0.0.1", "*")
    assert Path(schedctl_executable()).name == "schedctl"
