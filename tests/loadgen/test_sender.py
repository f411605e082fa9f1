"""The open-loop sender against real ROUTER sockets on loopback (`daemons.loadgen.sink`).

Each test plays coordinator and node with a script: immediate, slow, silent, failing,
duplicating, or sending garbage, and checks that every planned request ends in exactly one
outcome, measured from its scheduled time.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from daemons.bus import Envelope
from daemons.core.errors import ConfigError
from daemons.core.messages import Done, Error, FirstToken, Infer, Placement, Schedule
from daemons.loadgen import LoadgenConfig, PlannedRequest, Progress, Results, run
from daemons.loadgen.sink import Reply, immediate, running_sink

STATUSES = ("ok", "error", "timeout")


def constant_schedule(n: int, rps: float, start: float = 0.02, prompt: int = 16) -> list[PlannedRequest]:
    return [PlannedRequest(f"r{i:06d}", start + i / rps, "m", prompt, 4) for i in range(n)]


def assert_one_outcome_each(results: Results, schedule: list[PlannedRequest]) -> None:
    assert [r.request_id for r in results.records] == [r.request_id for r in schedule]
    assert all(r.status in STATUSES for r in results.records)
    assert sum(results.counts().values()) == len(schedule)
    for r in results.records:
        assert r.sent_s is not None and r.sent_s >= r.scheduled_s
        if r.status == "ok":
            assert r.done_s is not None and r.first_token_s is not None
            assert r.scheduled_s <= r.sent_s <= r.first_token_s <= r.done_s
            assert r.ttft_s is not None and r.latency_s is not None and 0 <= r.ttft_s <= r.latency_s
        else:
            assert r.error and r.done_s is None


def index(env: Envelope) -> int:
    return int(env.body.request_id[1:])


def test_all_ok_against_an_immediate_cluster() -> None:
    schedule = constant_schedule(200, rps=400)
    progress: list[Progress] = []
    with running_sink() as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=5), schedule, progress=progress.append)
        assert sink.received["schedule"] == sink.received["infer"] == 200
    assert_one_outcome_each(results, schedule)
    assert results.counts() == {"ok": 200, "error": 0, "timeout": 0, "not_sent": 0}
    assert all(r.node == "sink" and r.action == "SERVE" and r.tokens == 4 and r.placed_s for r in results.records)
    assert progress and progress[-1].sent == progress[-1].ok == 200 and progress[-1].in_flight == 0
    assert results.t0_wall_s == pytest.approx(time.time(), abs=30)
    assert sum(results.ignored.values()) == 0


KINDS = ("ok", "coord_error", "node_error", "never", "never_done", "malformed", "multipart", "dup",
         "no_first", "unknown", "bad_endpoint", "error_after_first")


def mixed(env: Envelope, endpoint: str) -> list[Reply]:
    """A cluster that misbehaves in a different way for each request (by index)."""
    kind = KINDS[index(env) % len(KINDS)]
    rid, body = env.body.request_id, env.body
    if isinstance(body, Schedule):
        place = Placement(rid, "n1", "not-an-endpoint" if kind == "bad_endpoint" else endpoint, "COLD_START", 0.5,
                          "test", 0.001)
        replies: dict[str, list[Reply]] = {
            "coord_error": [(0.0, Error(rid, "no_capacity", "no node can hold m"))],
            "never": [],
            "malformed": [(0.0, b"\x93garbage"), (0.01, place)],
            "multipart": [(0.0, [b"a", b"b"]), (0.01, place)],
            "dup": [(0.0, place), (0.0, place)],
        }
        return replies.get(kind, [(0.0, place)])
    assert isinstance(body, Infer)
    first, done = FirstToken(rid, "n1", "x"), Done(rid, "n1", 4, "length", body.action, 0, {"queue_s": 0.25})
    answers: dict[str, list[Reply]] = {
        "node_error": [(0.0, Error(rid, "oom", "out of KV cache", "n1"))],
        "never_done": [(0.0, first)],
        "dup": [(0.0, first), (0.0, first), (0.0, done), (0.01, done)],
        "no_first": [(0.0, done)],
        "unknown": [(0.0, Done("zzz", "n1", 1, "length")), (0.0, first), (0.0, done)],
        "error_after_first": [(0.0, first), (0.0, Error(rid, "node_lost", "backend died", "n1"))],
    }
    return answers.get(kind, [(0.0, first), (0.0, done)])


def test_every_request_gets_exactly_one_outcome_whatever_the_cluster_does() -> None:
    schedule = constant_schedule(len(KINDS) * 3, rps=200)
    with running_sink(mixed) as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=0.5), schedule)
        infers = sink.received["infer"]
    assert_one_outcome_each(results, schedule)
    by_kind: dict[str, set[tuple[str, str]]] = {}
    for rec in results.records:
        by_kind.setdefault(KINDS[int(rec.request_id[1:]) % len(KINDS)], set()).add((rec.status, rec.error))
    assert by_kind == {
        "ok": {("ok", "")}, "coord_error": {("error", "no_capacity")}, "node_error": {("error", "oom")},
        "never": {("timeout", "timeout")}, "never_done": {("timeout", "timeout")}, "malformed": {("ok", "")},
        "multipart": {("ok", "")}, "dup": {("ok", "")}, "no_first": {("ok", "")}, "unknown": {("ok", "")},
        "bad_endpoint": {("error", "bad_placement")}, "error_after_first": {("error", "node_lost")},
    }
    # A duplicated placement sends the request to the node once, not twice.
    assert infers == 3 * (len(KINDS) - 3)
    assert results.ignored == {"late": 3, "duplicate": 6, "unknown": 3, "unexpected": 0, "malformed": 6, "stale": 0}
    recs = {r.request_id: r for r in results.records}
    never, never_done = recs["r000003"], recs["r000004"]
    assert never.error_detail == "no placement within 0.5 s" and never.placed_s is None
    assert never_done.error_detail == "no done within 0.5 s" and never_done.first_token_s is not None
    no_first = recs["r000008"]
    assert no_first.first_token_s == no_first.done_s  # no FirstToken: TTFT is bounded by Done
    ok = recs["r000000"]
    assert (ok.action, ok.est_wait_s, ok.decision_s, ok.server_timings) == ("COLD_START", 0.5, 0.001,
                                                                           {"queue_s": 0.25})
    assert recs["r000011"].first_token_s is not None and recs["r000011"].node == "n1"


def delayed(delay: float) -> Callable[[Envelope, str], list[Reply]]:
    def script(env: Envelope, endpoint: str) -> list[Reply]:
        return [(delay if isinstance(env.body, Schedule) else 0.0, msg) for _, msg in immediate(env, endpoint)]
    return script


def test_open_loop_a_slow_cluster_does_not_delay_later_sends() -> None:
    schedule = constant_schedule(40, rps=100)  # all sent within 0.4 s; the first placement comes at 1 s
    with running_sink(delayed(1.0)) as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=5), schedule)
    assert_one_outcome_each(results, schedule)
    assert results.counts()["ok"] == 40
    recs = results.records
    assert max(r.sent_s or 0 for r in recs) < min(r.placed_s or 9 for r in recs)
    assert max(r.send_lag_s or 0 for r in recs) < 0.05
    # Latency counts from the scheduled time: every request waited the full second.
    assert all(1.0 <= (r.latency_s or 0) < 2.0 for r in recs)
    first, last = recs[0], recs[-1]
    assert (last.done_s or 0) - (first.done_s or 0) == pytest.approx(last.scheduled_s - first.scheduled_s, abs=0.1)


def test_silent_cluster_times_out_every_request_and_the_run_ends() -> None:
    schedule = constant_schedule(10, rps=50)
    started = time.monotonic()
    with running_sink(lambda env, ep: []) as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=0.3), schedule)
    assert time.monotonic() - started < 3
    assert results.counts() == {"ok": 0, "error": 0, "timeout": 10, "not_sent": 0}
    for r in results.records:
        assert r.done_s is None
        # Timed out at scheduled + timeout, not later.
        assert r.scheduled_s + 0.3 <= results.ended_s < r.scheduled_s + 0.3 + 1.0 + 0.2 * 10


def test_replies_after_a_timeout_are_counted_as_late() -> None:
    schedule = [PlannedRequest("r000000", 0.0, "m", 4, 4), PlannedRequest("r000001", 0.8, "m", 4, 4)]

    def script(env: Envelope, endpoint: str) -> list[Reply]:
        delay = 0.4 if index(env) == 0 else 0.0
        return [(delay, msg) for _, msg in immediate(env, endpoint)]

    with running_sink(script) as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=0.2), schedule)
    assert [r.status for r in results.records] == ["timeout", "ok"]
    assert results.ignored["late"] == 1  # the placement that came at 0.4 s


def test_gossip_mode_sends_infer_straight_to_entry_peers() -> None:
    schedule = constant_schedule(60, rps=300)
    actions: list[str] = []

    def peer(env: Envelope, endpoint: str) -> list[Reply]:
        assert isinstance(env.body, Infer)
        actions.append(env.body.action)
        rid = env.body.request_id
        return [(0.0, FirstToken(rid, "peer-b", "x")), (0.0, Done(rid, "peer-b", 4, "length", "SERVE", hops=1))]

    with running_sink(peer) as a, running_sink(peer) as b:
        cfg = LoadgenConfig(mode="gossip", entry=(a.endpoint, b.endpoint), timeout_s=5)
        results = run(cfg, schedule)
        split = (a.received["infer"], b.received["infer"])
    assert_one_outcome_each(results, schedule)
    assert results.counts()["ok"] == 60 and set(actions) == {""}
    assert all(r.hops == 1 and r.node == "peer-b" and r.placed_s is None for r in results.records)
    assert sum(split) == 60 and min(split) > 10  # spread over both entry peers


def test_placement_in_gossip_mode_is_unexpected() -> None:
    schedule = constant_schedule(3, rps=100)

    def peer(env: Envelope, endpoint: str) -> list[Reply]:
        rid = env.body.request_id
        return [(0.0, Placement(rid, "x", endpoint, "SERVE", 0, "")), *immediate(env, endpoint)]

    with running_sink(peer) as sink:
        results = run(LoadgenConfig(mode="gossip", entry=(sink.endpoint,), timeout_s=5), schedule)
    assert results.counts()["ok"] == 3 and results.ignored["unexpected"] == 3


def test_stop_cancels_what_is_left_with_one_outcome_each() -> None:
    schedule = constant_schedule(100, rps=50)  # 2 s of sends
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    with running_sink(lambda env, ep: []) as sink:
        timer.start()
        try:
            results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=10), schedule, stop=stop)
        finally:
            timer.cancel()
            timer.join()
    assert results.ended_s < 1.0
    # sent and unanswered: error cancelled; never sent: not_sent (no failure of the system)
    sent = [r for r in results.records if r.sent_s is not None]
    unsent = [r for r in results.records if r.sent_s is None]
    assert sent and unsent
    assert {(r.status, r.error) for r in sent} == {("error", "cancelled")}
    assert {r.status for r in unsent} == {"not_sent"}
    assert results.counts()["error"] == len(sent) and results.counts()["not_sent"] == len(unsent)


def test_unreachable_coordinator_times_out_rather_than_blocking() -> None:
    schedule = constant_schedule(5, rps=100)
    results = run(LoadgenConfig(coordinator="tcp://127.0.0.1:1", timeout_s=0.2), schedule)
    assert results.counts()["timeout"] == 5
    assert max(r.send_lag_s or 0 for r in results.records) < 0.05


@pytest.mark.parametrize(("schedule", "match"), [
    ([PlannedRequest("a", 1.0, "m", 1, 1), PlannedRequest("b", 0.5, "m", 1, 1)], "not in time order"),
    ([PlannedRequest("a", 0.0, "m", 1, 1), PlannedRequest("a", 0.5, "m", 1, 1)], "twice"),
])
def test_bad_schedules_are_refused(schedule: list[PlannedRequest], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        run(LoadgenConfig(coordinator="tcp://127.0.0.1:1"), schedule)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({}, "--coordinator"), ({"mode": "gossip"}, "--entry"), ({"mode": "p2p"}, "centralized or gossip"),
    ({"coordinator": "127.0.0.1:5555"}, "tcp://HOST:PORT"), ({"coordinator": "tcp://host"}, "no port"),
    ({"coordinator": "tcp://h:1", "timeout_s": 0}, "--timeout"), ({"coordinator": "tcp://h:1", "name": "a b"}, "name"),
    ({"coordinator": "tcp://h:1", "nice": -21}, "-20..19"),
])
def test_bad_configs_name_the_fix(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LoadgenConfig(**kwargs)


def test_nice_applies_during_the_run_and_is_restored() -> None:
    # -1 works as root and is refused with a warning otherwise; either way the run completes
    # and the thread ends at its old priority.
    before = os.getpriority(os.PRIO_PROCESS, 0)
    seen: list[int] = []
    with running_sink() as sink:
        results = run(LoadgenConfig(coordinator=sink.endpoint, timeout_s=5, nice=-1, progress_interval_s=0.05),
                      constant_schedule(5, rps=50), progress=lambda p: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
    assert results.counts()["ok"] == 5
    assert os.getpriority(os.PRIO_PROCESS, 0) == before
    assert set(seen) <= {before, -1} and seen
