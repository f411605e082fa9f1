"""Log rate limiting per cause, and out-of-range messages refused by a real daemon."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import msgpack

from daemons.coordinator.testing import Client, StatePublisher, node_state, running_coordinator
from daemons.core.logs import RateLimitFilter
from daemons.core.schema import to_dict


def record(msg: str, *args: object, level: int = logging.WARNING, cause: str | None = None) -> logging.LogRecord:
    rec = logging.LogRecord("schedctl.test", level, __file__, 1, msg, args, None)
    if cause is not None:
        rec.SCHEDCTL_CAUSE = cause
    return rec


def test_each_cause_gets_its_burst_then_the_next_line_says_how_many_were_suppressed() -> None:
    now = [0.0]
    f = RateLimitFilter(burst=3, interval=10.0, clock=lambda: now[0])
    passed = [f.filter(record("dropped frame from %s", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert f.filter(record("another cause %s", 1))  # causes are independent
    assert f.filter(record("info is never limited", level=logging.INFO))
    assert [f.filter(record("x", cause="c")) for _ in range(4)] == [True, True, True, False]
    now[0] = 10.0
    rec = record("dropped frame from %s", "p")
    assert f.filter(rec)
    assert rec.getMessage() == "dropped frame from p [7 more like this suppressed in the last 10 s]"
    assert f.suppressed_total == 8


def test_the_filter_tracks_a_bounded_number_of_causes() -> None:
    f = RateLimitFilter(burst=1, interval=60.0, max_causes=16)
    for i in range(1000):
        f.filter(record("x", cause=f"c{i}"))
    assert len(f._windows) == 16


def test_a_flood_of_bad_frames_is_refused_not_stored_and_logged_at_a_bounded_rate(tmp_path: Path) -> None:
    with running_coordinator(tmp_path, dead_after=30) as coord, StatePublisher(coord.state_bind) as pub, \
            Client(coord.bind) as client:
        good = node_state("n0", ready=["m1"])
        client.wait_for_nodes({"n0"}, publish=lambda: pub.publish(good))
        forged = to_dict(node_state("evil", ready=["m1"]))
        forged["queue_depth"] = 2**62  # schema-valid type, out of range
        bad_inc = to_dict(node_state("evil2", ready=["m1"]))
        bad_inc["gpus"][0]["utilization"] = float("nan")
        frames = [msgpack.packb([1, "state", "evil", "", forged]), msgpack.packb([1, "state", "evil", "", bad_inc]),
                  b"\x93garbage", os.urandom(64)]
        for i in range(2000):
            pub.send_raw([frames[i % len(frames)]])
        # The coordinator works through the flood while we look: wait for two causes' lines
        # (CI once counted after the first line alone).
        deadline = time.monotonic() + 30
        while coord.log().count("dropped malformed frame") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = client.status(10.0)  # still answering
        assert {r["node"] for r in reply.nodes} == {"n0"}  # nothing out of range was stored
        lines = [ln for ln in coord.log().splitlines() if "dropped malformed frame" in ln]
        assert 2 <= len(lines) <= 60, len(lines)  # 20 per cause per 10 s, three causes at most
        assert not any("4611686018427387904" in ln for ln in lines)  # the value is not echoed
