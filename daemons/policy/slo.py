"""SLO admission (`--admission slo`): shed a request that would miss its class's TTFT SLO anyway.

A request whose predicted TTFT (the chosen option's `est_wait_s`: the work queued ahead of
it, plus loading, plus prefill where the policy counts it) already exceeds its class's TTFT
SLO is refused with `shed` instead of being queued: it would only add to the queue of every
request behind it and still miss its SLO. After the per-request criticality of the Gateway
API Inference Extension (kubernetes-sigs/gateway-api-inference-extension: Critical, Standard
and Sheddable requests, the last dropped rather than queued when the servers are saturated;
Kubernetes blog, "Introducing Gateway API Inference Extension", 2025-06-05), with the
saturation test made per class: its own TTFT objective. One rule for the coordinator and
every gossip peer: both call `admit`.

`admission = "queue"` (the default) never sheds: every request is placed or waits.
"""

from __future__ import annotations

from daemons.core.errors import ConfigError
from daemons.policy.view import Decision, PlacementRequest, Refusal

SHED = "shed"
ADMISSIONS = ("queue", "slo")


def check_admission(admission: object, where: str = "") -> None:
    if admission not in ADMISSIONS:
        raise ConfigError(f"{where}admission {admission!r} is unknown: use queue (never shed) or slo "
                          "(shed a request whose predicted TTFT exceeds its class's SLO)")


def admit(result: Decision | Refusal, request: PlacementRequest, admission: str) -> Decision | Refusal:
    """The policy's answer, or a `shed` Refusal when admission is slo and the decision's
    predicted TTFT exceeds the request's TTFT SLO (requests without one are never shed)."""
    if admission != "slo" or not isinstance(result, Decision) or request.slo_ttft_s <= 0:
        return result
    if result.est_wait_s <= request.slo_ttft_s:
        return result
    return Refusal(SHED, f"shed: predicted TTFT {result.est_wait_s:.2f} s on {result.node} exceeds the class's "
                         f"SLO of {request.slo_ttft_s:.2f} s (--admission slo); lower the load or add nodes")
