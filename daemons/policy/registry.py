"""The policies by name, as configs and the command line refer to them."""

from __future__ import annotations

from collections.abc import Callable
from random import Random
from typing import TypeAlias

from daemons.core.errors import ConfigError
from daemons.policy.affinity import affinity_score
from daemons.policy.baseline import least_loaded, random_choice, round_robin
from daemons.policy.startup import startup_optimal
from daemons.policy.view import ClusterView, Decision, PlacementRequest, Refusal

Policy: TypeAlias = Callable[[ClusterView, PlacementRequest, Random], Decision | Refusal]

POLICIES: dict[str, Policy] = {
    "affinity-score": affinity_score,
    "round-robin": round_robin,
    "random": random_choice,
    "least-loaded": least_loaded,
    "startup-optimal": startup_optimal,
}
DEFAULT_POLICY = "affinity-score"


def get_policy(name: str) -> Policy:
    """The policy called `name`; a ConfigError listing the known names otherwise."""
    try:
        return POLICIES[name]
    except KeyError:
        known = ", ".join(sorted(POLICIES))
        raise ConfigError(f"unknown policy {name!r}: choose one of {known}") from None
