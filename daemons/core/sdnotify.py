"""systemd's notify protocol (sd_notify(3)) in a few lines, so daemons can run as Type=notify.

Why our own: the `sdnotify` package swallows errors and `systemd-python` needs a compiler
and libsystemd headers (sd_notify(3)). Outside systemd ($NOTIFY_SOCKET unset) every
call is a no-op, so daemons call these unconditionally.

    ready("serving on tcp://...")      the unit leaves "activating"
    ready(text, {"bind": "tcp://..."}) and says which endpoints it bound (X_SCHEDCTL_ENDPOINTS)
    status("3 models loaded")          shown by `systemctl status`
    stopping()                         on SIGTERM, before draining
    start_watchdog()                   asyncio daemons: WATCHDOG=1 every WatchdogSec/2 from the loop
    Watchdog().ping()                  poller-loop daemons: call every iteration, sends when due

The watchdog is fed from the event loop itself, never from a helper thread: a stuck or
stopped loop must stop the pings, or the watchdog would not notice the daemon is dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("schedctl.sdnotify")
ENDPOINTS = "X_SCHEDCTL_ENDPOINTS"


def notify(*fields: str) -> bool:
    """Send `KEY=VALUE` fields in one datagram; True if a notify socket took them."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:  # systemd gone or socket not ours: never fatal for the daemon
        log.warning("sd_notify to %s failed: %s", address, exc)
        return False
    return True


def ready(status_text: str = "", endpoints: Mapping[str, str] | None = None) -> bool:
    """READY=1; with `endpoints` (role -> endpoint really bound, e.g. a port the kernel picked)
    also X_SCHEDCTL_ENDPOINTS=role=endpoint,... (sd_notify(3): custom fields start with X_)."""
    fields = [f"STATUS={_one_line(status_text)}"] if status_text else []
    if endpoints:
        fields.append(ENDPOINTS + "=" + ",".join(f"{k}={v}" for k, v in endpoints.items()))
    return notify("READY=1", *fields)


def parse_endpoints(datagram: str) -> dict[str, str]:
    """The X_SCHEDCTL_ENDPOINTS of a notify datagram, for whoever listens on NOTIFY_SOCKET."""
    for line in datagram.splitlines():
        key, _, value = line.partition("=")
        if key == ENDPOINTS:
            return dict(item.partition("=")[::2] for item in value.split(",") if "=" in item)
    return {}


def status(text: str) -> bool:
    return notify(f"STATUS={_one_line(text)}")


def stopping(status_text: str = "stopping") -> bool:
    return notify("STOPPING=1", f"STATUS={_one_line(status_text)}")


def extend_timeout(seconds: float) -> bool:
    """Ask for more start/stop time (a long model load) before systemd gives up."""
    return notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}")


def watchdog_interval() -> float | None:
    """Seconds between pings (half of WatchdogSec), or None if the watchdog is not for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) <= 0:
        return None
    if pid and pid != str(os.getpid()):  # inherited from a parent: the watchdog watches it, not us
        return None
    return int(usec) / 2e6


class Watchdog:
    """For a blocking poll loop: `ping()` every iteration (poll timeout < WatchdogSec/2)."""

    def __init__(self) -> None:
        self.interval = watchdog_interval()
        self.due = 0.0

    def ping(self) -> None:
        if self.interval is None:
            return
        now = time.monotonic()
        if now >= self.due:
            notify("WATCHDOG=1")
            self.due = now + self.interval


async def _feed(interval: float) -> None:
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def start_watchdog() -> asyncio.Task[None] | None:
    """Start feeding the watchdog from the running loop; None when no watchdog is configured.

    Cancel the returned task at shutdown (or leave it: it dies with the loop).
    """
    interval = watchdog_interval()
    if interval is None:
        return None
    return asyncio.get_running_loop().create_task(_feed(interval), name="sd-watchdog")


async def stop_watchdog(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _one_line(text: str) -> str:
    return " ".join(text.split())
