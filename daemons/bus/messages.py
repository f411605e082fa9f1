"""The message types schedctl daemons exchange, one frozen dataclass each.

The class annotations are the wire schema (see `schema.py`). `MESSAGE_TYPES` maps the
envelope's type string to its class; a frame whose type is not in it is dropped.

Request flow (DESIGN.md §2):
    loadgen -> coordinator   Schedule            coordinator -> loadgen   Placement
    loadgen -> node          Infer               node -> loadgen          FirstToken, Done | Error
                                                 node -> loadgen          Progress (about once a second)
    loadgen -> node          Cancel              (another node won the race: stop, free the slot)
                                                 peer -> loadgen          Reassigned (gossip: its serving
                                                                          peer is gone, placed again)
    node -> PUB              NodeState           coordinator -> PUB       ClusterEvent
    anyone -> daemon         StatusRequest       daemon -> asker          StatusReply

Coordinator failover (Binary Star, `daemons/coordinator/failover.py`):
    coordinator -> PUB       CoordinatorState    (its peer and observers subscribe)
    coordinator -> node      WitnessQuery        node -> coordinator      WitnessVote
    coordinator -> node      EpochNotice         (a new active coordinator fences the old one)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

Action = Literal["SERVE", "COLD_START", "MIGRATE"]
ACTIONS: tuple[str, ...] = ("SERVE", "COLD_START", "MIGRATE")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Ask the coordinator where to run a request."""

    TYPE: ClassVar[str] = "schedule"
    request_id: str
    model: str
    prompt_tokens: int
    max_new_tokens: int
    priority: int = 0
    exclude: list[str] = field(default_factory=list)  # nodes that already failed this request


@dataclass(frozen=True, slots=True)
class Placement:
    """The coordinator's decision for one request."""

    TYPE: ClassVar[str] = "placement"
    request_id: str
    node: str
    endpoint: str
    action: str
    est_wait_s: float
    reason: str
    decision_s: float = 0.0  # time the policy took, for the decision-latency figures
    epoch: int = 0  # the deciding coordinator's epoch (0: a coordinator without failover)


@dataclass(frozen=True, slots=True)
class Infer:
    """Run one request on a node (or, in gossip mode, let the node place it)."""

    TYPE: ClassVar[str] = "infer"
    request_id: str
    model: str
    prompt: str
    max_new_tokens: int
    action: str = "SERVE"
    hops: int = 0
    max_hops: int = 1
    route: list[str] = field(default_factory=list)  # nodes this request has passed through
    # The epoch of the coordinator that placed it: a node that knows a newer epoch refuses
    # it (`stale_epoch`), so a deposed coordinator's placements never run. 0: not fenced.
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The first generated token of a request reached the node."""

    TYPE: ClassVar[str] = "first_token"
    request_id: str
    node: str
    text: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """A node still holds a request: sent about once a second from acceptance until Done.

    It is the request's liveness signal: the load generator retries an attempt only when its
    node is known gone or silent (no Progress, token or answer) for its attempt timeout.
    Periodic rather than per token: its cost is one small frame per request per second,
    whatever the output length (daemons/node/server.py says why).
    """

    TYPE: ClassVar[str] = "progress"
    request_id: str
    node: str
    tokens: int = 0  # generated so far (0 while it waits for a load or a batch slot)


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop serving `request_id` on `node` and free its slot: another node won the race.

    A node that gets one for another node relays it there (gossip peers know the endpoint).
    """

    TYPE: ClassVar[str] = "cancel"
    request_id: str
    node: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Reassigned:
    """Gossip: the peer serving a forwarded request is gone (its connection dropped), and the
    forwarding peer is placing the request again; `node` is the one that lost it."""

    TYPE: ClassVar[str] = "reassigned"
    request_id: str
    node: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Done:
    """A request finished; `timings` are the backend's server-side figures in seconds."""

    TYPE: ClassVar[str] = "done"
    request_id: str
    node: str
    tokens: int
    finish_reason: str
    action: str = "SERVE"
    hops: int = 0
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed; `code` is a stable machine-readable reason."""

    TYPE: ClassVar[str] = "error"
    request_id: str
    code: str
    message: str
    node: str = ""


@dataclass(frozen=True, slots=True)
class ModelState:
    """One model on one node, as the node sees it."""

    model: str
    state: str  # loading | ready | failed | evicting
    queue_depth: int = 0
    running: int = 0
    memory_bytes: int = 0
    last_used: float = 0.0  # node-local monotonic seconds, only compared on that node


@dataclass(frozen=True, slots=True)
class GpuState:
    index: int
    name: str
    memory_total: int
    memory_used: int
    utilization: float = 0.0


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A model this node can load: what it would occupy and how long loading would take."""

    model: str
    footprint_bytes: int
    load_s: float


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node's published state: sent on every change and at least every second."""

    TYPE: ClassVar[str] = "state"
    node: str
    endpoint: str
    gen: int  # boot nonce: a restarted node starts a new generation
    seq: int  # increases with every publication of one generation
    gpus: list[GpuState]
    models: list[ModelState]
    queue_depth: int
    gpu_backend: str = "emulated"
    scheduler: str = "centralized"
    in_flight: int = 0
    catalog: list[CatalogEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """Something observers should know: a node joined, died, came back, a failover."""

    TYPE: ClassVar[str] = "event"
    kind: str
    node: str
    detail: str = ""
    ts: float = 0.0  # wall clock of the emitter, for the events log only


@dataclass(frozen=True, slots=True)
class Probe:
    """Sparrow-style probe from a gossip peer: answer when you could take this request."""

    TYPE: ClassVar[str] = "probe"
    request_id: str
    model: str


@dataclass(frozen=True, slots=True)
class ProbeReply:
    TYPE: ClassVar[str] = "probe_reply"
    request_id: str
    node: str
    load: int
    ready: bool  # the model is loaded there


@dataclass(frozen=True, slots=True)
class StatusRequest:
    TYPE: ClassVar[str] = "status_request"


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A daemon's view of the cluster, for `schedctl status`."""

    TYPE: ClassVar[str] = "status"
    role: str
    nodes: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)  # role-specific, e.g. a coordinator's failover state


@dataclass(frozen=True, slots=True)
class CoordinatorState:
    """A coordinator's heartbeat on its events PUB: who it is, its Binary Star state, its epoch."""

    TYPE: ClassVar[str] = "coordinator_state"
    name: str
    role: str  # primary | backup | standalone (configured)
    state: str  # primary | backup | active | passive (now)
    epoch: int
    endpoint: str  # its request ROUTER
    ts: float = 0.0


@dataclass(frozen=True, slots=True)
class WitnessQuery:
    """A coordinator about to take over asks a node: can you still reach my peer?"""

    TYPE: ClassVar[str] = "witness_query"
    candidate: str
    epoch: int  # the epoch the candidate would take
    peer: str  # the silent coordinator's request endpoint, to probe
    probe_s: float = 1.0  # how long the node waits for the peer's answer


@dataclass(frozen=True, slots=True)
class WitnessVote:
    TYPE: ClassVar[str] = "witness_vote"
    node: str
    epoch: int
    granted: bool  # True: the peer did not answer (take over); False: it did
    reason: str = ""


@dataclass(frozen=True, slots=True)
class EpochNotice:
    """A coordinator has become active in `epoch`: refuse placements of older epochs."""

    TYPE: ClassVar[str] = "epoch_notice"
    coordinator: str
    epoch: int


MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Schedule, Placement, Infer, FirstToken, Done, Error, NodeState, ClusterEvent, Probe,
                ProbeReply, StatusRequest, StatusReply, CoordinatorState, WitnessQuery, WitnessVote,
                EpochNotice, Progress, Cancel, Reassigned)
}
