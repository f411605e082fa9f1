"""Logging set-up shared by every daemon: plain lines on stderr.

Structured fields travel in `extra={"SCHEDCTL_REQUEST_ID": ..., ...}` so the journald
handler can index them; the plain formatter appends them as key=value.
"""

from __future__ import annotations

import logging
import re
import sys

FIELD = re.compile(r"^SCHEDCTL_[A-Z0-9_]+$")


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{k[9:].lower()}={v}" for k, v in vars(record).items() if FIELD.match(k)]
        return f"{line} {' '.join(fields)}" if fields else line


def setup_logging(role: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PlainFormatter(f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
