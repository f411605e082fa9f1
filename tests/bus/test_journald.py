"""The journald handler: native-protocol datagrams with SCHEDCTL_* fields, and the switch rule."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemons.core import logs


def parse(datagram: bytes) -> dict[str, str]:
    """Decode the native protocol (both the KEY=value and the length-prefixed forms)."""
    out: dict[str, str] = {}
    i = 0
    while i < len(datagram):
        end = datagram.index(b"\n", i)
        line = datagram[i:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            i = end + 1
        else:
            key = line
            size = int.from_bytes(datagram[end + 1:end + 9], "little")
            value = datagram[end + 9:end + 9 + size]
            i = end + 9 + size + 1
        out[key.decode()] = value.decode()
    return out


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "journal.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def emit(handler: logging.Handler, msg: str, *args: object, **kw: object) -> None:
    logger = logging.getLogger("schedctl.test.journald")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        logger.warning(msg, *args, **kw)  # type: ignore[arg-type]
    finally:
        logger.handlers.clear()


def test_structured_fields(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    handler = logs.JournalHandler("schedctl-node", {"SCHEDCTL_NODE": "gpu-1"}, path=path)
    emit(handler, "serving %s", "r-1", extra={"SCHEDCTL_REQUEST_ID": "r-1", "SCHEDCTL_ACTION": "SERVE",
                                              "not_a_field": 1})
    fields = parse(sock.recv(65536))
    assert fields["MESSAGE"] == "serving r-1"
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "schedctl-node"
    assert (fields["SCHEDCTL_NODE"], fields["SCHEDCTL_REQUEST_ID"], fields["SCHEDCTL_ACTION"]) == ("gpu-1", "r-1",
                                                                                                   "SERVE")
    assert "not_a_field" not in fields and "NOT_A_FIELD" not in fields
    assert len(fields["MESSAGE_ID"]) == 32 and fields["CODE_FUNC"] == "emit"


def test_multiline_message_uses_length_prefix(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    try:
        raise ValueError("boom")
    except ValueError:
        emit(logs.JournalHandler("t", path=path), "failed", exc_info=True)
    fields = parse(sock.recv(65536))
    assert fields["MESSAGE"].startswith("failed\nTraceback") and "ValueError: boom" in fields["MESSAGE"]


def test_oversized_record_goes_through_a_memfd(journal: tuple[socket.socket, str]) -> None:
    sock, path = journal
    handler = logs.JournalHandler("t", path=path)
    handler.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # as if journald's limit were hit
    emit(handler, "x" * 400_000)
    data, ancdata, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(4))
    assert data == b""
    fd = int.from_bytes(ancdata[0][2][:4], sys.byteorder)
    with os.fdopen(fd, "rb") as f:  # journald maps the memfd: read it from the start
        f.seek(0)
        assert parse(f.read())["MESSAGE"] == "x" * 400_000


def test_switch_only_when_journal_stream_is_our_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert logs.stderr_is_journal(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")  # inherited from a parent
        assert not logs.stderr_is_journal(f.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert not logs.stderr_is_journal()


def test_plain_lines_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup_logging("node[a]", "INFO", {"SCHEDCTL_NODE": "a"})
        (handler,) = root.handlers
        assert isinstance(handler, logging.StreamHandler) and isinstance(handler.formatter, logs.PlainFormatter)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
