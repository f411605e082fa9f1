"""The daemon logs of a local run (`results/<run>/daemons/*.log`), for `schedctl logs` where
there is no journal: `schedctl experiment run` starts its daemons outside systemd, and each
writes plain lines (`2026-01-01 12:00:00,123 node[node-0] INFO logger: message`) to its file.

Pure functions over paths and lines; cli/logs.py decides when to use them and prints.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

DAEMONS = "daemons"  # cli/experiment/cluster.py: LocalCluster's workdir inside a run directory
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}[,.]\d{3} ")


@dataclass(frozen=True)
class Line:
    when: str  # the line's own timestamp: sorts by time across files
    daemon: str  # the file's stem: coordinator, node-0, ...
    text: str  # the line as written, continuation lines (tracebacks) appended

    def render(self) -> str:
        return f"{self.daemon}: {self.text}"


def latest_run(results_dir: Path) -> Path | None:
    """The most recently written run directory that holds daemon logs, or None."""
    runs = [d.parent for d in results_dir.glob(f"*/{DAEMONS}") if any(d.glob("*.log"))]
    return max(runs, key=lambda d: (d / DAEMONS).stat().st_mtime, default=None)


def log_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / DAEMONS).glob("*.log"))


def parse(daemon: str, lines: Iterable[str]) -> list[Line]:
    """One Line per timestamped line; lines without a timestamp belong to the one before."""
    out: list[Line] = []
    for raw in lines:
        raw = raw.rstrip("\n")
        if _STAMP.match(raw) or not out:
            out.append(Line(raw[:23], daemon, raw))
        else:
            last = out[-1]
            out[-1] = Line(last.when, daemon, f"{last.text}\n{raw}")
    return out


def select(lines: Iterable[Line], request_id: str | None, node: str | None, last: int | None) -> list[Line]:
    """Merged by time; a request's lines name its id, a node's are its own file's or name it."""
    picked = [ln for ln in lines
              if (request_id is None or request_id in ln.text)
              and (node is None or ln.daemon == node or node in ln.text)]
    picked.sort(key=lambda ln: ln.when)
    return picked[-last:] if last is not None and last > 0 else picked


def read_run(run_dir: Path, request_id: str | None, node: str | None, last: int | None) -> list[Line]:
    lines: list[Line] = []
    for path in log_files(run_dir):
        with path.open(encoding="utf-8", errors="replace") as fh:
            lines += parse(path.stem, fh)
    return select(lines, request_id, node, last)
