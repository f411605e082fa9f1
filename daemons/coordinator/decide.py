"""The coordinator's decision step, as a pure function: (policy, view, request) -> answer.

The real coordinator (server.py) and the simulated one (daemons/sim/coordinator.py) both
call `decide`, so a placement made on the same view, request and random state is the same
in both engines: one decision rule, not two. The only effect a decision may have, making
room for a MIGRATE by ordering live migrations, is the caller's `make_room` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from random import Random

from daemons.policy import MIGRATE, NO_NODES, ClusterView, Decision, PlacementRequest, Policy, Refusal
from daemons.policy.slo import admit

# A MIGRATE that is not carried out (live_migration off, nothing to move): the policy is asked
# again without the MIGRATE target, this many times, for the best option that serves it now.
MIGRATE_FALLBACKS = 3

MakeRoom = Callable[[ClusterView, Decision], bool]  # order the moves a MIGRATE needs; False: none


def decide(policy: Policy, view: Callable[[], ClusterView], request: PlacementRequest, rng: Random,
           make_room: MakeRoom, admission: str) -> Decision | Refusal:
    """The policy's choice, shed if `admission` is slo and it misses the request's SLO."""
    return admit(choose(policy, view, request, rng, make_room), request, admission)


def choose(policy: Policy, view: Callable[[], ClusterView], request: PlacementRequest, rng: Random,
           make_room: MakeRoom) -> Decision | Refusal:
    """The policy's choice on `view()`; a MIGRATE is carried out (`make_room`) or, when it
    cannot be, replaced by the best option that serves now."""
    targets: list[str] = []
    for _ in range(MIGRATE_FALLBACKS):
        now_view = view()
        result = policy(now_view, request, rng)
        if not (isinstance(result, Decision) and result.action == MIGRATE):
            if targets and isinstance(result, Decision):
                result = replace(result, reason=f"{result.reason} (MIGRATE to {', '.join(targets)} "
                                                "needs live migration: the next best option instead)")
            return result
        if make_room(now_view, result):
            return result
        targets.append(result.node)
        request = replace(request, exclude=request.exclude | {result.node})
    return Refusal(NO_NODES, f"only MIGRATE to {', '.join(targets)} would take {request.model} now, and its "
                             "running requests cannot be moved: waiting for memory to free there")
