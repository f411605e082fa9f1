"""What predictive pre-warming bought and cost in one run, from its events and requests.

- critical_cold_starts: successful requests that waited for a model load on their own
  critical path (action COLD_START: it started the load; SERVE_LOADING: it waited for a
  load another request or a pre-warm started);
- prewarms: `prewarm` events (a node began a load ahead of demand, daemons/node/learning.py;
  detail `by=NODE;model=M;bytes=B;ordered_by=WHO;evict=A+B;forecast_rps=F;capacity_rps=C`);
- prewarm_hits: `prewarm_hit` events: the first request for a pre-warmed model found it
  ready, a cold start moved off that request's critical path;
- prewarm_unused: `prewarm_unused` events: a pre-warmed model evicted before any use;
- prewarm_gpu_gib: GPU memory the pre-warms booked, summed over them (each event's `bytes`);
- evictions: `evict` events (published with pre-warming on only: least expected use).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from daemons.rundir import Event, RequestRow

GIB = float(1 << 30)
CRITICAL = ("COLD_START", "SERVE_LOADING")


def prewarm_columns(events: Iterable[Event], requests: Iterable[RequestRow]) -> dict[str, Any]:
    counts = {"prewarm": 0, "prewarm_hit": 0, "prewarm_unused": 0, "evict": 0}
    booked = 0
    for e in events:
        if e.kind in counts:
            counts[e.kind] += 1
        if e.kind == "prewarm":
            value = e.fields().get("bytes", "0")
            booked += int(value) if value.isdigit() else 0
    critical = sum(1 for r in requests if r.ok and r.action in CRITICAL)
    return {"critical_cold_starts": critical, "prewarms": counts["prewarm"], "prewarm_hits": counts["prewarm_hit"],
            "prewarm_unused": counts["prewarm_unused"], "prewarm_gpu_gib": booked / GIB,
            "evictions": counts["evict"]}
