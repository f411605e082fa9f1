"""Logging set-up shared by every daemon: the journal's native protocol under systemd,
plain lines on stderr everywhere else.

Structured fields travel in `extra={"SCHEDCTL_REQUEST_ID": ..., ...}`: the journald
handler sends them as indexed journal fields (`journalctl SCHEDCTL_REQUEST_ID=r-17`),
the plain formatter appends them as key=value.

Warnings and errors are rate-limited per cause (`RateLimitFilter`): a peer sending
10,000 malformed frames a second must not turn the journal into the attack's amplifier.
The first `burst` lines of a cause per `interval` pass; the rest are counted, and the next
line of that cause that passes says how many were suppressed. Per-request success lines
are DEBUG, so INFO stays proportional to what happens to the cluster, not to the load.

Why native and not just stderr: journald indexes only the fields it is given; lines on
stderr become MESSAGE alone. We switch only when $JOURNAL_STREAM names *our* fd 2
(systemd's journal native protocol): the variable alone may be inherited by a child whose stderr is a
pipe or a file, and that child must keep writing plain lines there.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Mapping

FIELD = re.compile(r"^SCHEDCTL_[A-Z0-9_]+$")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


class RateLimitFilter(logging.Filter):
    """Let `burst` records per cause through per `interval` seconds, count the rest.

    The cause is `extra={"SCHEDCTL_CAUSE": ...}` when given, else the logger and the
    unformatted message (one cause per log statement, whatever its arguments). Records
    below `level` always pass. At most `max_causes` causes are tracked (oldest forgotten),
    so the filter itself is bounded.
    """

    def __init__(self, burst: int = 20, interval: float = 10.0, level: int = logging.WARNING,
                 max_causes: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.interval, self.level, self.max_causes, self.clock = burst, interval, level, max_causes, clock
        self._windows: dict[object, list[float]] = {}  # cause -> [window start, passed, suppressed]
        self.suppressed_total = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        cause = getattr(record, "SCHEDCTL_CAUSE", None) or (record.name, str(record.msg))
        now = self.clock()
        window = self._windows.get(cause)
        if window is None or now - window[0] >= self.interval:
            suppressed = 0 if window is None else int(window[2])
            self._windows.pop(cause, None)
            self._windows[cause] = [now, 1, 0]
            if len(self._windows) > self.max_causes:
                del self._windows[next(iter(self._windows))]
            if suppressed:
                record.msg = f"{record.msg} [{suppressed} more like this suppressed in the last {self.interval:g} s]"
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        self.suppressed_total += 1
        return False


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{k[9:].lower()}={v}" for k, v in vars(record).items() if FIELD.match(k)]
        return f"{line} {' '.join(fields)}" if fields else line


def stderr_is_journal(fd: int = 2) -> bool:
    """True when $JOURNAL_STREAM (`<dev>:<ino>`) is the file behind `fd`."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def encode_field(key: str, value: object) -> bytes:
    """One field of the native protocol: `KEY=value\\n`, or the length-prefixed form for
    values containing a newline (tracebacks)."""
    data = str(value).encode("utf-8", "replace")
    if b"\n" not in data:
        return key.encode() + b"=" + data + b"\n"
    return key.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"


class JournalHandler(logging.Handler):
    """Send records to journald over its native datagram socket."""

    def __init__(self, identifier: str, fields: Mapping[str, object] | None = None,
                 path: str = JOURNAL_SOCKET) -> None:
        super().__init__()
        self.path = path
        self.base = {"SYSLOG_IDENTIFIER": identifier, **(fields or {})}
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        with contextlib.suppress(OSError):  # a bigger buffer keeps bursts from blocking the loop
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)

    def record_fields(self, record: logging.LogRecord) -> dict[str, object]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        out: dict[str, object] = {
            **self.base, "MESSAGE": message, "PRIORITY": PRIORITY.get(record.levelno, 6),
            "LOGGER": record.name, "CODE_FILE": record.pathname, "CODE_LINE": record.lineno,
            "CODE_FUNC": record.funcName,
        }
        out.update({k: v for k, v in vars(record).items() if FIELD.match(k) and v is not None})
        if "SCHEDCTL_REQUEST_ID" in out:  # one MESSAGE_ID per request makes `journalctl MESSAGE_ID=` work too
            out["MESSAGE_ID"] = uuid.uuid5(uuid.NAMESPACE_OID, str(out["SCHEDCTL_REQUEST_ID"])).hex
        return out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = b"".join(encode_field(k, v) for k, v in self.record_fields(record).items())
            self._send(data)
        except Exception:
            self.handleError(record)

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendto(data, self.path)
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                raise
            # Too big for one datagram: hand journald a sealed memfd instead (the protocol's rule).
            fd = os.memfd_create("schedctl-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            try:
                os.write(fd, data)
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
                self.sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))],
                                  0, self.path)
            finally:
                os.close(fd)

    def close(self) -> None:
        self.sock.close()
        super().close()


# HTTP client libraries log each request at INFO and each socket step at DEBUG: a node
# polls its instances every second, so they would drown its own lines. Warnings still pass.
QUIET_LIBRARIES = ("httpx", "httpx2", "httpcore", "httpcore2", "hpack", "huggingface_hub")


def setup_logging(role: str, level: str = "INFO", fields: Mapping[str, object] | None = None,
                  rate_limit: RateLimitFilter | None = None) -> None:
    """Route the root logger to the journal (under systemd) or to stderr.

    `role` is e.g. "node[gpu-1]"; `fields` are SCHEDCTL_* fields added to every journal
    record of this process (e.g. {"SCHEDCTL_NODE": "gpu-1"}), so filters such as
    `schedctl logs --node gpu-1` find its start-up and shutdown lines too. Warnings and
    errors pass `rate_limit` (default: 20 per cause per 10 s).
    """
    handler: logging.Handler
    if stderr_is_journal() and os.path.exists(JOURNAL_SOCKET):
        identifier = "schedctl-" + role.split("[", 1)[0]
        handler = JournalHandler(identifier, {"SCHEDCTL_ROLE": role, **(fields or {})})
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(rate_limit or RateLimitFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:  # their per-request lines (every health and metrics poll) are noise
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
