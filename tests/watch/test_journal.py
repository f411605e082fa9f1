"""The runner's live journal: what it writes is what the watch reads, whole lines only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli.watch import journal
from cli.watch.journal import Journal, LiveRun, Tail
from daemons.loadgen.recorder import RequestRecord
from daemons.rundir import Event, Slo

T0 = 1_700_000_000.0


def record(rid: str, status: str = "", done: float | None = None) -> RequestRecord:
    return RequestRecord(rid, "opt", 16, 8, 1.0, sent_s=1.0, first_token_s=1.5 if done else None, done_s=done,
                         tokens=3 if done else None, status=status, node="node-0")


def live_run(pid: int) -> LiveRun:
    return LiveRun(pid, "gossip", "exp", Slo(ttft_ms=250), {}, {"node-0": "tcp://127.0.0.1:1"}, "/tmp/keys")


def test_events_and_finished_requests_are_journalled_once_each(tmp_path: Path) -> None:
    events = [Event(T0, "fault", "node-0", "kind=kill")]
    j = Journal(tmp_path, events)
    records = [record("r0", "ok", 2.0), record("r1"), record("r2", "ok", None), record("r3", "timeout")]
    j.take_records(records, T0)
    j.flush()
    reqs = Tail(tmp_path / journal.LIVE / journal.REQUESTS)
    evs = Tail(tmp_path / journal.LIVE / journal.EVENTS)
    got = [journal.request_of(d) for d in reqs.read()]
    # r1 is in flight; r2's status is set but not its done time yet (the recorder sets them in that order)
    assert [(t, r.request_id, r.status) for t, r in got] == [(T0 + 2.0, "r0", "ok"), (T0 + 1.0, "r3", "timeout")]
    assert got[0][1].ttft_s == 0.5 and got[0][1].tokens == 3
    assert [journal.event_of(d) for d in evs.read()] == events
    records[1].status, records[1].error = "error", "x"
    records[2].done_s = 3.0
    events.append(Event(T0 + 1, "node_dead", "node-0"))
    j.stop()
    assert sorted(journal.request_of(d)[1].request_id for d in reqs.read()) == ["r1", "r2"]
    assert [journal.event_of(d).kind for d in evs.read()] == ["node_dead"]
    assert (tmp_path / journal.LIVE / journal.ENDED).exists()


def test_a_tail_returns_only_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    tail = Tail(path)
    assert tail.read() == []  # not there yet
    path.write_text('{"a": 1}\n{"b": ', encoding="utf-8")
    assert tail.read() == [{"a": 1}]
    with path.open("a", encoding="utf-8") as fh:
        fh.write('2}\n')
    assert tail.read() == [{"b": 2}]


def test_the_newest_running_arm_is_found_and_an_ended_or_orphaned_one_is_not(tmp_path: Path) -> None:
    assert journal.newest_running(tmp_path / "none") is None
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    orphan, ended, older, newest = (tmp_path / n for n in ("orphan", "ended", "older", "newest"))
    journal.write_run(orphan, live_run(int(gone.stdout)))  # its runner is gone
    journal.write_run(ended, live_run(os.getpid()))
    (ended / journal.LIVE / journal.ENDED).touch()
    journal.write_run(older, live_run(os.getpid()))
    journal.write_run(newest, live_run(os.getpid()))
    os.utime(older / journal.LIVE / journal.RUN, (T0, T0))
    assert journal.newest_running(tmp_path) == newest
    assert journal.newest_running(tmp_path, pid=os.getpid() + 1) is None
    assert journal.read_run(newest) == live_run(os.getpid())
    (newest / journal.LIVE / journal.RUN).write_text("{", encoding="utf-8")
    assert journal.read_run(newest) is None and journal.newest_running(tmp_path) == older
    assert json.loads((older / journal.LIVE / journal.RUN).read_text())["slo"]["ttft_ms"] == 250
