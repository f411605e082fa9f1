"""Logging set-up shared by every daemon: the journal's native protocol under systemd,
plain lines on stderr everywhere else.

Structured fields travel in `extra={"SCHEDCTL_REQUEST_ID": ..., ...}`: the journald
handler sends them as indexed journal fields (`journalctl SCHEDCTL_REQUEST_ID=r-17`),
the plain formatter appends them as key=value.

Why native and not just stderr: journald indexes only the fields it is given; lines on
stderr become MESSAGE alone. We switch only when $JOURNAL_STREAM names *our* fd 2
(REFERENCE.md §8.3): the variable alone may be inherited by a child whose stderr is a
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
import traceback
import uuid
from collections.abc import Mapping

FIELD = re.compile(r"^SCHEDCTL_[A-Z0-9_]+$")
JOURNAL_SOCKET = "/run/systemd/journal/socket"
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL


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


def setup_logging(role: str, level: str = "INFO", fields: Mapping[str, object] | None = None) -> None:
    """Route the root logger to the journal (under systemd) or to stderr.

    `role` is e.g. "node[gpu-1]"; `fields` are SCHEDCTL_* fields added to every journal
    record of this process (e.g. {"SCHEDCTL_NODE": "gpu-1"}), so filters such as
    `schedctl logs --node gpu-1` find its start-up and shutdown lines too.
    """
    handler: logging.Handler
    if stderr_is_journal() and os.path.exists(JOURNAL_SOCKET):
        identifier = "schedctl-" + role.split("[", 1)[0]
        handler = JournalHandler(identifier, {"SCHEDCTL_ROLE": role, **(fields or {})})
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
