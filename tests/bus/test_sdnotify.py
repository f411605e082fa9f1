"""sd_notify without systemd: a datagram socket in a temp dir stands in for PID 1 (sd_notify(3))."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemons.core import sdnotify


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_noop_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.ready("x") is False


def test_ready_status_stopping(notify_socket: socket.socket) -> None:
    assert sdnotify.ready("serving on\ntcp://x")
    assert notify_socket.recv(4096) == b"READY=1\nSTATUS=serving on tcp://x"
    sdnotify.status("2 models")
    assert notify_socket.recv(4096) == b"STATUS=2 models"
    sdnotify.stopping()
    assert notify_socket.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"schedctl-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("WATCHDOG=1")
        assert sock.recv(64) == b"WATCHDOG=1"


def test_unreachable_socket_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.status("x") is False


@pytest.mark.parametrize(("usec", "pid", "expected"), [
    ("", "", None), ("0", "", None), ("4000000", "", 2.0), ("4000000", "self", 2.0), ("4000000", "1", None),
])
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str, pid: str, expected: float | None) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()) if pid == "self" else pid)
    assert sdnotify.watchdog_interval() == expected


async def test_watchdog_pings_from_the_loop_and_stops_with_it(notify_socket: socket.socket,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notify_socket.setblocking(False)
    task = sdnotify.start_watchdog()
    assert task is not None
    await asyncio.sleep(0.18)
    await sdnotify.stop_watchdog(task)
    pings = []
    while True:
        try:
            pings.append(notify_socket.recv(64))
        except BlockingIOError:
            break
    assert 3 <= len(pings) <= 5 and set(pings) == {b"WATCHDOG=1"}
    await asyncio.sleep(0.1)
    with pytest.raises(BlockingIOError):  # cancelled: no more pings
        notify_socket.recv(64)


async def test_no_watchdog_task_when_not_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.start_watchdog() is None


def test_poll_loop_watchdog_rate_limits(notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    dog = sdnotify.Watchdog()
    for _ in range(100):  # a busy loop pings once per interval, not once per iteration
        dog.ping()
    notify_socket.setblocking(False)
    assert notify_socket.recv(64) == b"WATCHDOG=1"
    with pytest.raises(BlockingIOError):
        notify_socket.recv(64)
