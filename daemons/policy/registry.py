"""Every placement policy by name, with the modes it serves: one table, one lookup, one error.

A mode is where a policy runs, named as the scheduler that runs it (NodeConfig.scheduler,
the experiment's `scheduler`): `centralized`, the coordinator deciding from the whole
cluster's state, or `gossip`, a peer deciding from its own gossiped view (it also knows
which node it is). Each mode calls its policies with its own arguments, so an entry holds
one implementation per mode it serves; a mode without one is a mode it does not serve
(the coordinator's argmin policies would herd every peer onto one node, and the peers'
sampling policies need to know who is deciding). A `hybrid` mode is one more field of
`PolicyEntry`, one more name in `MODES`, and one more overload of `get_policy`.

    get_policy("affinity-score", "centralized")(view, request, rng)
    get_policy("power-of-d", "gossip")(view, request, rng, me)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Literal, TypeAlias, overload

from daemons.core.errors import ConfigError
from daemons.policy.affinity import affinity_score
from daemons.policy.baseline import least_loaded, random_choice, round_robin
from daemons.policy.peer import SPARROW, local_first, power_of_d
from daemons.policy.startup import startup_optimal
from daemons.policy.view import ClusterView, Decision, PlacementRequest, Refusal

Mode: TypeAlias = Literal["centralized", "gossip"]
MODES: tuple[Mode, ...] = ("centralized", "gossip")
_WHO: dict[Mode, str] = {"centralized": "the centralized coordinator", "gossip": "gossip peers"}

# centralized: (view, request, rng); gossip: the same and `me`, the name of the deciding peer.
Policy: TypeAlias = Callable[[ClusterView, PlacementRequest, Random], Decision | Refusal]
PeerPolicy: TypeAlias = Callable[[ClusterView, PlacementRequest, Random, str], Decision | Refusal]


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One policy: its implementation for each mode it serves (None: it does not serve that mode)."""

    centralized: Policy | None = None
    gossip: PeerPolicy | None = None

    @property
    def modes(self) -> tuple[Mode, ...]:
        return tuple(m for m in MODES if self.serves(m))

    def serves(self, mode: Mode) -> bool:
        return self.run_as(mode) is not None

    def run_as(self, mode: Mode) -> Policy | PeerPolicy | None:
        """The implementation `mode` calls, or None."""
        return self.centralized if mode == "centralized" else self.gossip


POLICIES: dict[str, PolicyEntry] = {
    "affinity-score": PolicyEntry(centralized=affinity_score),
    "round-robin": PolicyEntry(centralized=round_robin),
    "random": PolicyEntry(centralized=random_choice),
    "least-loaded": PolicyEntry(centralized=least_loaded),
    "startup-optimal": PolicyEntry(centralized=startup_optimal),
    "local-first": PolicyEntry(gossip=local_first),
    "power-of-d": PolicyEntry(gossip=power_of_d),
    # Sparrow probes first (daemons/node/gossip_mode.py); this is its choice when no probe is answered.
    "sparrow": PolicyEntry(gossip=SPARROW),
}
DEFAULTS: dict[Mode, str] = {"centralized": "affinity-score", "gossip": "power-of-d"}
DEFAULT_POLICY = DEFAULTS["centralized"]
DEFAULT_GOSSIP_POLICY = DEFAULTS["gossip"]


def names(mode: Mode) -> list[str]:
    """The policies that serve `mode`, sorted (for errors and help text)."""
    return sorted(name for name, entry in POLICIES.items() if entry.serves(mode))


@overload
def get_policy(name: str, mode: Literal["centralized"] = "centralized") -> Policy: ...
@overload
def get_policy(name: str, mode: Literal["gossip"]) -> PeerPolicy: ...
def get_policy(name: str, mode: Mode = "centralized") -> Policy | PeerPolicy:
    """The policy called `name` as `mode` runs it.

    A ConfigError, naming the policies that serve `mode`, for a name no entry has or an
    entry that does not serve `mode`.
    """
    entry = POLICIES.get(name)
    found = None if entry is None else entry.run_as(mode)
    if found is None:
        raise ConfigError(_refusal(name, mode, entry))
    return found


def _refusal(name: str, mode: Mode, entry: PolicyEntry | None) -> str:
    fix = f"choose one of {', '.join(names(mode))}"
    if entry is None:
        return f"unknown policy {name!r} for {_WHO[mode]}: {fix}"
    serves = " and ".join(_WHO[m] for m in entry.modes)
    return f"policy {name!r} serves {serves}, not {_WHO[mode]}: {fix}"


__all__ = ["DEFAULTS", "DEFAULT_GOSSIP_POLICY", "DEFAULT_POLICY", "MODES", "POLICIES", "Mode", "PeerPolicy",
           "Policy", "PolicyEntry", "get_policy", "names"]
