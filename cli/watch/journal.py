"""The live journal of a local run in progress: what `schedctl watch` reads from the runner.

requests.csv and events.csv are written when an arm ends; a watcher needs them as they
happen. The runner already holds both (the load generator's records, the collector's
events: faults, verdicts, detections, every ClusterEvent), so it appends them once a second
to `RUN_DIR/live/`, from a thread of its own, never the sending thread. The daemons do no
extra work for it. Files (all written here, all read here):

- `run.json`   written once the cluster is up: the runner's pid, the arm (scheduler), the
               SLO, the coordinators' and nodes' request endpoints, and the directory of the
               run's CURVE keys (a private 0700 temporary directory, deleted with the
               cluster; only its path is written) so a watcher on this host can ask the
               daemons for their status as the run's `operator`;
- `events.jsonl`   one event per line: {"t": Unix time, "kind", "target", "detail"};
- `requests.jsonl` one finished request per line: its requests.csv row (daemons/rundir)
               plus "t", the Unix time it finished;
- `ended`      created when the arm is over (the journal stays, for a late look).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.loadgen.recorder import RequestRecord
from daemons.loadgen.results import request_row
from daemons.rundir import Event, RequestRow, Slo
from daemons.rundir.requests import OK

LIVE = "live"
RUN, EVENTS, REQUESTS, ENDED = "run.json", "events.jsonl", "requests.jsonl", "ended"
FLUSH_S = 1.0


@dataclass(frozen=True)
class LiveRun:
    """run.json: who runs the arm and where its daemons answer."""

    pid: int
    scheduler: str
    name: str
    slo: Slo
    coordinators: dict[str, str]  # name -> request endpoint
    nodes: dict[str, str]  # name -> request endpoint
    keys: str | None = None  # the run's CURVE key directory (None: --insecure)
    key: str = "operator"  # the key pair in `keys` a watcher uses

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "slo": dataclasses.asdict(self.slo)}


def write_run(run_dir: Path, run: LiveRun) -> None:
    live = run_dir / LIVE
    live.mkdir(parents=True, exist_ok=True)
    tmp = live / (RUN + ".tmp")
    tmp.write_text(json.dumps(run.to_dict(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(live / RUN)  # a reader never sees half a file


def read_run(run_dir: Path) -> LiveRun | None:
    """The run's run.json; None when there is none (yet) or it is unreadable."""
    try:
        doc = json.loads((run_dir / LIVE / RUN).read_text(encoding="utf-8"))
        return LiveRun(pid=int(doc["pid"]), scheduler=str(doc["scheduler"]), name=str(doc["name"]),
                       slo=Slo(**doc.get("slo") or {}), coordinators=dict(doc.get("coordinators") or {}),
                       nodes=dict(doc.get("nodes") or {}), keys=doc.get("keys"), key=str(doc.get("key", "operator")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_running(run_dir: Path) -> bool:
    """The arm has a journal, has not ended, and its runner process is alive."""
    run = read_run(run_dir)
    return run is not None and not (run_dir / LIVE / ENDED).exists() and _alive(run.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def newest_running(results_dir: Path, pid: int | None = None) -> Path | None:
    """The most recently started arm in progress under `results_dir` (run by process `pid`, if
    given); None when there is none."""
    if not results_dir.is_dir():
        return None
    found = [d for d in results_dir.iterdir() if (d / LIVE / RUN).is_file() and is_running(d)
             and (pid is None or ((run := read_run(d)) is not None and run.pid == pid))]
    return max(found, key=lambda d: (d / LIVE / RUN).stat().st_mtime, default=None)


class Journal:
    """The runner's side: appends new events and finished requests once a second, in its own thread.

    `events` is the collector's list (append-only); `take_records` hands over the load
    generator's record list as soon as the progress callback sees it (Progress.records).
    """

    def __init__(self, run_dir: Path, events: list[Event]) -> None:
        self.dir = run_dir / LIVE
        self.dir.mkdir(parents=True, exist_ok=True)
        self._events = events
        self._records: Sequence[RequestRecord] = ()
        self._events_done = 0
        self._first_open = 0  # every record before it is journalled
        self._done: set[int] = set()
        self._t0_wall = math.nan
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="live-journal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def take_records(self, records: Sequence[RequestRecord], t0_wall_s: float) -> None:
        self._records, self._t0_wall = records, t0_wall_s

    def stop(self) -> None:
        """Flush what is left and mark the arm ended."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.flush()
        (self.dir / ENDED).touch()

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def flush(self) -> None:
        events = self._events[self._events_done:]
        self._events_done += len(events)
        _append(self.dir / EVENTS, ({"t": e.t_s, "kind": e.kind, "target": e.target, "detail": e.detail}
                                    for e in events))
        _append(self.dir / REQUESTS, self._finished())

    def _finished(self) -> Iterator[dict[str, Any]]:
        records, t0 = self._records, self._t0_wall
        for i in range(self._first_open, len(records)):
            rec = records[i]
            if i in self._done or not _final(rec):
                continue
            self._done.add(i)
            end = rec.done_s if rec.done_s is not None else rec.scheduled_s
            yield {**dataclasses.asdict(request_row(rec)), "t": t0 + end}
        while self._first_open in self._done:  # keep the scan short: skip the finished head
            self._done.discard(self._first_open)
            self._first_open += 1


def _final(rec: RequestRecord) -> bool:
    # The recorder sets the status before done_s: a success counts once both are there.
    return bool(rec.status) and (rec.status != OK or rec.done_s is not None)


def _append(path: Path, rows: Iterator[dict[str, Any]]) -> None:
    lines = [json.dumps(row) + "\n" for row in rows]
    if lines:
        with path.open("a", encoding="utf-8") as fh:
            fh.write("".join(lines))


@dataclass
class Tail:
    """Reads the lines appended to one journal file since the last call (whole lines only)."""

    path: Path
    offset: int = 0
    _partial: str = field(default="", repr=False)

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("r", encoding="utf-8") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except OSError:
            return []
        text = self._partial + chunk
        *lines, self._partial = text.split("\n")
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def event_of(doc: dict[str, Any]) -> Event:
    return Event(float(doc["t"]), str(doc["kind"]).lower(), str(doc.get("target", "")), str(doc.get("detail", "")))


def request_of(doc: dict[str, Any]) -> tuple[float, RequestRow]:
    """(when it finished, Unix time; its row) of one requests.jsonl line."""
    fields = {f.name for f in dataclasses.fields(RequestRow)}
    row = {k: v for k, v in doc.items() if k in fields}
    row["failed_nodes"] = tuple(row.get("failed_nodes") or ())
    return float(doc["t"]), RequestRow(**row)


def start_journal(run_dir: Path, run: LiveRun, events: list[Event]) -> Journal:
    write_run(run_dir, run)
    journal = Journal(run_dir, events)
    journal.start()
    return journal

