"""The pre-warming figures of a run (cli/report/prewarming.py) and their line in the text report."""

from __future__ import annotations

import pytest

from cli.report.prewarming import prewarm_columns
from daemons.rundir import Event, RequestRow

GIB = 1 << 30


def test_events_and_actions_become_the_prewarm_columns() -> None:
    events = [Event(1.0, "prewarm", "node-1",
                    f"by=node-1;model=m;bytes={16 * GIB};ordered_by=coordinator;evict=a+b;forecast_rps=3"),
              Event(2.0, "prewarm", "node-2", f"by=node-2;model=m;bytes={8 * GIB};ordered_by=node-2"),
              Event(3.0, "prewarm_hit", "node-1", "model=m;request=r1"),
              Event(4.0, "prewarm_unused", "node-2", "model=m"),
              Event(4.0, "evict", "node-2", "model=m;why=least_expected_use"),
              Event(5.0, "fault", "node-0", "kind=kill")]
    requests = [RequestRow(f"r{i}", 0.0, action=a, status=s)
                for i, (a, s) in enumerate([("COLD_START", "ok"), ("SERVE_LOADING", "ok"), ("SERVE", "ok"),
                                            ("COLD_START", "error")])]
    cols = prewarm_columns(events, requests)
    assert cols == {"critical_cold_starts": 2, "prewarms": 2, "prewarm_hits": 1, "prewarm_unused": 1,
                    "prewarm_gpu_gib": pytest.approx(24.0), "evictions": 1}


def test_the_text_report_says_what_prewarming_bought_and_cost_only_when_it_ran() -> None:
    from cli.report.text import _prewarm_line

    class S:  # the Summary fields the line reads
        prewarms, prewarm_gpu_gib, prewarm_hits, prewarm_unused, critical_cold_starts, evictions = 2, 24.0, 1, 1, 3, 4

    line = _prewarm_line(S())  # type: ignore[arg-type]
    assert line.startswith("2 pre-warm(s) booking 24.0 GiB: 1 cold start(s) moved off the critical path")
    assert "3 request(s) still waited for a load" in line
