"""Sockets handed down by a launcher, and a daemon's life tied to the launcher's.

Why: a launcher that picks a free port and lets a daemon bind it later loses a race to
any process that binds in between ("Address already in use", once in a 10-node run). So
the launcher binds and listens itself (port 0: the kernel picks the port, no one else
can take it), hands the listening sockets to the daemon, and the daemon's ZeroMQ socket
adopts one with ZMQ_USE_FD (libzmq's hook for systemd socket activation, zmq_setsockopt(3))
instead of binding anew. Every endpoint is known before any daemon starts, so dependants
(nodes need the coordinator, peers need seeds, the load generator needs everyone) are
given their addresses in any order, and a failover pair can name each other.

It is systemd's socket activation (sd_listen_fds(3)) with one difference: Popen keeps the
descriptors' numbers, so they are listed rather than counted from 3. A daemon started any
other way binds as before; an address with port `*` (or 0) binds a port the kernel picks,
and `bind()` returns the endpoint really bound, for the log, READY=1 and status.

The launcher also asks each daemon to die with it (SCHEDCTL_PARENT_PID): `adopt()` sets
PR_SET_PDEATHSIG (prctl(2)) so the kernel SIGKILLs the daemon when the launcher dies, by
SIGKILL too, then checks the launcher is still its parent (it may have died before the
prctl). The signal fires when the launcher's *thread* that forked exits: spawn from the
main thread or from one that lives as long as the daemons (cli/experiment/cluster.py).

    launcher:  sock = listen("127.0.0.1")              # port chosen and held now
               Popen(cmd, pass_fds=[sock.fileno()], env=child_env([sock]))
               sock.close()                             # the daemon has its own copy
    daemon:    adopt()                                  # once, first thing
               endpoint = bind(zmq_socket, "tcp://127.0.0.1:41234")
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import zmq

log = logging.getLogger("schedctl.activation")

LISTEN_FDS = "SCHEDCTL_LISTEN_FDS"  # space-separated descriptor numbers of listening TCP sockets
PARENT_PID = "SCHEDCTL_PARENT_PID"  # die with this process (PR_SET_PDEATHSIG)
BACKLOG = 100  # ZMQ_BACKLOG's default: what the daemon's own bind would have used
PR_SET_PDEATHSIG = 1

_inherited: dict[tuple[str, int], int] = {}  # (host, port) -> descriptor, until a socket adopts it


# ----- launcher side ---------------------------------------------------------------------
def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on `host` (port 0: the kernel picks a free one), held from now on."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As libzmq's own listener: a restarted daemon rebinds its port despite TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def endpoint_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"tcp://{host}:{port}"


def child_env(sockets: Iterable[socket.socket | int], base: Mapping[str, str] | None = None,
              die_with_parent: bool = True) -> dict[str, str]:
    """The environment of a daemon handed `sockets` (sockets or descriptors: pass the same
    descriptors as Popen's pass_fds)."""
    env = dict(os.environ if base is None else base)
    # Ours alone: a launcher's own supervisor (systemd's notify socket and watchdog) is not the daemon's.
    for key in (LISTEN_FDS, PARENT_PID, "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    fds = " ".join(str(s if isinstance(s, int) else s.fileno()) for s in sockets)
    if fds:
        env[LISTEN_FDS] = fds
    if die_with_parent:
        env[PARENT_PID] = str(os.getpid())
    return env


def offer(sock: socket.socket) -> str:
    """Hand `sock` to a ZeroMQ socket of this very process (the experiment's collector): its
    `bind()` adopts it. Returns its endpoint; the descriptor now belongs to that bind."""
    endpoint = endpoint_of(sock)
    host, port = sock.getsockname()[:2]
    _inherited[(host, port)] = sock.detach()
    return endpoint


def claim(endpoint: str) -> int | None:
    """Take back an offered socket's descriptor to hand it to a child instead (the caller closes it)."""
    return _inherited.pop(_host_port(endpoint), None)


def withdraw(endpoint: str) -> None:
    """Close an offered socket nobody adopted (a run that failed before its collector started)."""
    fd = _inherited.pop(_host_port(endpoint), None)
    if fd is not None:
        os.close(fd)


# ----- daemon side -----------------------------------------------------------------------
def adopt() -> None:
    """Take what the launcher handed down (listening sockets, the duty to die with it), once,
    and clear it from the environment so this daemon's own children inherit nothing."""
    fds = os.environ.pop(LISTEN_FDS, "")
    parent = os.environ.pop(PARENT_PID, "")
    if parent:
        _die_with(parent)
    for text in fds.split():
        _take(text)


def _die_with(parent: str) -> None:
    if sys.platform != "linux" or not parent.isdigit():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d; this daemon may outlive its launcher",
                    ctypes.get_errno())
        return
    if os.getppid() != int(parent):  # the launcher died before the prctl: the kernel will not tell us
        os._exit(1)


def _take(text: str) -> None:
    if not text.isdigit():
        log.warning("ignoring %s entry %r: not a descriptor number", LISTEN_FDS, text)
        return
    fd = int(text)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        log.warning("ignoring inherited descriptor %d: %s", fd, exc)
        return
    try:
        address = sock.getsockname()
        listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    except OSError as exc:
        log.warning("ignoring inherited descriptor %d: %s", fd, exc)
        sock.close()
        return
    if sock.family != socket.AF_INET or sock.type != socket.SOCK_STREAM or not listening:
        log.warning("ignoring inherited descriptor %d: not a listening IPv4 TCP socket", fd)
        sock.close()
        return
    sock.set_inheritable(False)  # ours alone: never leaks into a backend instance
    _inherited[(address[0], address[1])] = sock.detach()


def bind(sock: zmq.Socket[Any], address: str) -> str:
    """Bind `sock` to `address`, adopting a handed-down listening socket for it if there is one.

    Returns the endpoint bound (with the port the kernel picked for `tcp://HOST:*`). Raises
    zmq.ZMQError as `sock.bind` does; callers turn that into a ConfigError naming their flag.
    """
    fd = _inherited.pop(_host_port(address), None) if address.startswith("tcp://") else None
    if fd is not None:
        sock.setsockopt(zmq.USE_FD, fd)
    try:
        sock.bind(address)
    except zmq.ZMQError:
        if fd is not None:
            sock.setsockopt(zmq.USE_FD, -1)
            os.close(fd)
        raise
    if fd is not None:
        sock.setsockopt(zmq.USE_FD, -1)  # only this bind: a later one on the socket binds anew
    bound = sock.getsockopt(zmq.LAST_ENDPOINT)
    return bound.decode() if isinstance(bound, bytes) else str(bound)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    host = "0.0.0.0" if host == "*" else host.strip("[]")  # ZeroMQ's "every interface"
    return host, int(port) if port.isdigit() else 0


def inherited() -> list[str]:
    """Endpoints handed down and not yet adopted (for tests and a warning at start-up)."""
    return [f"tcp://{h}:{p}" for h, p in _inherited]
