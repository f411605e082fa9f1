"""Who may say what: the authorisation rule of every daemon, in one place (sans-IO).

With CURVE on, the ZAP handler (`daemons/bus/security.py`) binds each admitted public
key to one identity: a name and its role(s), read from the key file's metadata
(`schedctl keys generate --role node --name gpu-1`). libzmq stamps that identity on every
message of the connection as its `User-Id` (ZMQ RFC 27), formatted by `user_id` below and
read back with `parse_user_id`. A daemon then acts on a message only if `check` allows it:

- the role may send that message type (`RULES`), e.g. only loadgen/operator schedule,
  only coordinators send witness queries and epoch notices;
- where a message names its sender (the envelope's sender, `NodeState.node`,
  `WitnessQuery.candidate`, `EpochNotice.coordinator`, a gossip frame's member name),
  the name must be the authenticated one: a node's key publishes state for itself only.

Why the check happens on the side that binds: ZAP authenticates CURVE *clients* to the
server they connect to, so only a bound socket learns who its peer is. Every bound socket
that takes messages (coordinator ROUTER and state SUB, node ROUTER, gossip ROUTER, the
collector's SUB) checks. A socket that connects (a DEALER awaiting replies, a SUB on a
coordinator's events PUB) authenticates the server by the cluster's server key, which only
hosts that bind hold; what arrives there is a reply to what we asked, or the events of
the endpoint we chose: `identity=None` below.

Without CURVE (`--insecure`) nothing is authenticated and nothing is checked.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

ROLES = ("coordinator", "node", "loadgen", "collector", "operator")
MAX_NAME = 128

# message type -> the roles that may send it to a bound socket. A type not listed is
# never accepted from a client (replies, placements and events travel the other way).
RULES: dict[str, frozenset[str]] = {
    "schedule": frozenset({"loadgen", "operator", "node"}),  # node: a hybrid peer refers a cold start
    "infer": frozenset({"loadgen", "operator", "node"}),  # node: a gossip peer forwards a request
    "cancel": frozenset({"loadgen", "operator", "node"}),  # node: a gossip peer relays it to the server
    "status_request": frozenset(ROLES),
    "state": frozenset({"node"}),
    "event": frozenset({"node"}),  # a gossip peer's verdicts, on its state PUB to the collector
    "probe": frozenset({"node"}),
    "migrate": frozenset({"coordinator", "operator"}),  # move a running request off a node
    "prewarm": frozenset({"coordinator", "operator"}),  # load a model ahead of forecast demand
    "resume": frozenset({"node"}),  # a migration's source asks its destination to take over
    "witness_query": frozenset({"coordinator"}),
    "epoch_notice": frozenset({"coordinator"}),
    "gossip": frozenset({"node"}),  # every frame of the gossip protocol (daemons/gossip)
}
# Every admitted key may ask these, a key without a role included.
ANYONE = frozenset({"status_request"})
# Messages that travel from a server we connected to (identity None): allowed from it.
FROM_SERVER = frozenset({"event", "coordinator_state", "status", "placement", "first_token", "progress", "done",
                         "error", "reassigned", "probe_reply", "witness_vote", "token", "handover",
                         "resume_ready", "model_map"})
# Roles whose name carries authority: a message only they may send must carry their own name
# as its sender (requests, status questions and schedules are answered whoever asks).
NAMED_ROLES = frozenset({"coordinator", "node"})


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    roles: frozenset[str]

    def user_id(self) -> str:
        return user_id(self.name, self.roles)


def user_id(name: str, roles: frozenset[str] | set[str]) -> str:
    """`ROLE[,ROLE]:NAME`, the User-Id the ZAP handler gives a key (`-:NAME` with no role)."""
    return f"{','.join(sorted(roles)) or '-'}:{name}"


@functools.lru_cache(maxsize=4096)
def parse_user_id(value: str | None) -> Identity | None:
    """The identity in a User-Id, or None when there is none (or it is not ours).

    Read for every message on a CURVE socket, from the few keys a cluster has: remembered."""
    if not value or ":" not in value:
        return None
    roles, _, name = value.partition(":")
    found = frozenset(r for r in roles.split(",") if r in ROLES)
    return Identity(name, found) if name else None


def check_role_name(role: str, name: str) -> str | None:
    """Why a (role, name) cannot be a key's identity, or None."""
    if role not in ROLES:
        return f"unknown role {role!r} (roles: {', '.join(ROLES)})"
    if not name or len(name) > MAX_NAME or not name.isprintable() or any(c in name for c in ":, "):
        return f"bad name {name[:40]!r}: 1-{MAX_NAME} printable characters without ':', ',' or spaces"
    return None


def claimed(mtype: str, body: Any) -> str | None:
    """The sender a message body names, for the types whose body names one."""
    if mtype == "state":
        return str(body.node)
    if mtype == "witness_query":
        return str(body.candidate)
    if mtype == "epoch_notice":
        return str(body.coordinator)
    if mtype == "event":  # a gossip peer's verdict names its observer: `by=<name>;...`
        by = str(body.detail).partition("by=")[2].partition(";")[0]
        return by if str(body.detail).startswith("by=") else ""
    return None


def check(identity: Identity | None, mtype: str, sender: str, body: Any = None) -> str | None:
    """Why `identity` may not send this message (None: allowed).

    `identity` None: the message came from a server we connected to (see the module doc).
    `body` None skips the body's claim (for a check before decoding, on the header alone).
    """
    if identity is None:
        return None if mtype in FROM_SERVER else f"{mtype!r} from an unauthenticated peer"
    if mtype in ANYONE:
        return None
    allowed = RULES.get(mtype, frozenset())
    if not identity.roles & allowed:
        roles = ",".join(sorted(identity.roles)) or "no role"
        return f"{identity.name} ({roles}) may not send {mtype!r}"
    if allowed <= NAMED_ROLES and sender != identity.name:
        return f"{identity.name} sent {mtype!r} as {sender[:64]!r}"
    named = None if body is None else claimed(mtype, body)
    if named is not None and named != identity.name:
        return f"{identity.name} sent {mtype!r} about {named[:64]!r}"
    return None


class TokenBucket:
    """Per-cause rate limit for log lines: `burst` lines at once, then one per `every_s`.

    `take(cause, now)` returns None to stay quiet, or how many lines of that cause were
    suppressed since the last one written (0 included), so the writer can say so.
    """

    def __init__(self, burst: int = 5, every_s: float = 10.0, max_causes: int = 256) -> None:
        self.burst, self.every_s, self.max_causes = burst, every_s, max_causes
        self._state: dict[str, tuple[float, float, int]] = {}  # cause -> (tokens, last, suppressed)

    def take(self, cause: str, now: float) -> int | None:
        if cause not in self._state and len(self._state) >= self.max_causes:
            cause = "(other causes)"  # a flood of distinct causes shares one bucket
        tokens, last, suppressed = self._state.get(cause, (float(self.burst), now, 0))
        tokens = min(float(self.burst), tokens + (now - last) / self.every_s)
        if tokens < 1.0:
            self._state[cause] = (tokens, now, suppressed + 1)
            return None
        self._state[cause] = (tokens - 1.0, now, 0)
        return suppressed


__all__ = ["ANYONE", "FROM_SERVER", "NAMED_ROLES", "ROLES", "RULES", "Identity", "TokenBucket", "check",
           "check_role_name", "claimed", "parse_user_id", "user_id"]
