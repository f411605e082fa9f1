"""The action a node reports for a request it serves: what it actually did, not the plan.

The coordinator's Placement says what it expected (SERVE when the model is loaded or
loading there, COLD_START, MIGRATE); the node knows better, because it sees whether the
model's instance was ready at the moment the Infer arrived:

- SERVE          the instance was loaded and ready: the only cache hit;
- SERVE_LOADING  the instance existed but was still loading (another request started the
                 load): this request waited for the load, so it was cold for its user too;
- COLD_START     this request started the load;
- MIGRATE        placed as MIGRATE and served by a ready instance (a MIGRATE that had to
                 load reports COLD_START or SERVE_LOADING, which say more).

Done.action carries it to the load generator (requests.csv `action`); the report counts
only SERVE as a hit (cli/report/summary.py).
"""

from __future__ import annotations

SERVE, SERVE_LOADING, COLD_START, MIGRATE = "SERVE", "SERVE_LOADING", "COLD_START", "MIGRATE"


def served_action(requested: str, cold: bool, ready_on_arrival: bool) -> str:
    """The label of a served request: `cold` when it started the load, `ready_on_arrival`
    when its model's instance was ready as it arrived, `requested` the placement's action."""
    if cold:
        return COLD_START
    if not ready_on_arrival:
        return SERVE_LOADING
    return MIGRATE if requested == MIGRATE else SERVE
