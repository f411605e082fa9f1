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
from dataclasses import dataclass, replace
from random import Random
from typing import Literal, TypeAlias, overload

from daemons.core.errors import ConfigError
from daemons.policy import learned
from daemons.policy.affinity import affinity_score
from daemons.policy.baseline import least_loaded, random_choice, round_robin
from daemons.policy.peer import SPARROW, local_first, power_of_d
from daemons.policy.sparrow import Sparrow
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
# `--affinity learned` (learned.py) re-ranks the candidates of the policies that rank any.
AFFINITIES = ("static", "learned")
LEARNS = ("affinity-score", "startup-optimal", "local-first", "power-of-d", "sparrow")
DEFAULTS: dict[Mode, str] = {"centralized": "affinity-score", "gossip": "power-of-d"}
DEFAULT_POLICY = DEFAULTS["centralized"]
DEFAULT_GOSSIP_POLICY = DEFAULTS["gossip"]


def names(mode: Mode) -> list[str]:
    """The policies that serve `mode`, sorted (for errors and help text)."""
    return sorted(name for name, entry in POLICIES.items() if entry.serves(mode))


@overload
def get_policy(name: str, mode: Literal["centralized"] = "centralized", affinity: str = "static") -> Policy: ...
@overload
def get_policy(name: str, mode: Literal["gossip"], affinity: str = "static") -> PeerPolicy: ...
def get_policy(name: str, mode: Mode = "centralized", affinity: str = "static") -> Policy | PeerPolicy:
    """The policy called `name` as `mode` runs it, with `affinity` learned or static.

    A ConfigError, naming the policies that serve `mode`, for a name no entry has or an
    entry that does not serve `mode`; another for an affinity the policy cannot use.
    """
    entry = POLICIES.get(name)
    found = None if entry is None else entry.run_as(mode)
    if found is None:
        raise ConfigError(_refusal(name, mode, entry))
    check_affinity(name, affinity)
    if affinity == "static":
        return found
    if isinstance(found, Sparrow):  # it still probes; its choice without answers learns
        return replace(found, fallback=learned.peer(found.fallback, name))
    if mode == "gossip":
        return learned.peer(found, name)  # type: ignore[arg-type]
    return learned.centralized(found, name)  # type: ignore[arg-type]


def check_affinity(policy: str, affinity: object, where: str = "") -> None:
    """One ConfigError for an unknown affinity, or `learned` with a policy that ranks nothing."""
    if affinity not in AFFINITIES:
        raise ConfigError(f"{where}affinity {affinity!r} is unknown: use static (the policy's own scores) or "
                          "learned (rank by the TTFT each node has measured)")
    if affinity == "learned" and policy not in LEARNS:
        raise ConfigError(f"{where}policy {policy!r} cannot use --affinity learned (it ranks no candidates): "
                          f"use it with {', '.join(LEARNS)}, or --affinity static")


def _refusal(name: str, mode: Mode, entry: PolicyEntry | None) -> str:
    fix = f"choose one of {', '.join(names(mode))}"
    if entry is None:
        return f"unknown policy {name!r} for {_WHO[mode]}: {fix}"
    serves = " and ".join(_WHO[m] for m in entry.modes)
    return f"policy {name!r} serves {serves}, not {_WHO[mode]}: {fix}"


__all__ = [
    "AFFINITIES",
    "DEFAULTS",
    "DEFAULT_GOSSIP_POLICY",
    "DEFAULT_POLICY",
    "LEARNS",
    "MODES",
    "POLICIES",
    "Mode",
    "PeerPolicy",
    "Policy",
    "PolicyEntry",
    "check_affinity",
    "get_policy",
    "names",
]
