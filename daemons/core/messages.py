"""The message types schedctl daemons exchange, one frozen dataclass each.

The class annotations are the wire schema (see `schema.py`). `MESSAGE_TYPES` maps the
envelope's type string to its class; a frame whose type is not in it is dropped.

Request flow:
    loadgen -> coordinator   Schedule            coordinator -> loadgen   Placement
    loadgen -> node          Infer               node -> loadgen          FirstToken, Done | Error
                                                 node -> loadgen          Progress (about once a second)
    loadgen -> node          Cancel              (another node won the race: stop, free the slot)
                                                 node -> loadgen          StreamToken (each token, if Infer.stream)

Live migration of a running request (daemons/node/migration.py; ServerlessLLM's token-based
migration, Fu et al., OSDI'24, sllm/routers/migration_router.py):
    coordinator/operator -> source node   Migrate       (move `request_id` to `to_node`)
    source -> destination                 Resume        (prompt + text generated so far; `final`:
                                                         the source has stopped, serve the rest)
    destination -> source                 ResumeReady   (a non-final round's prefill is done)
    source -> loadgen                     Handover      (later tokens come from `to_node`, relayed
                                                         by the source: one stream, one outcome)
                                                 peer -> loadgen          Reassigned (gossip: its serving
                                                                          peer is gone, placed again)
    node -> PUB              NodeState           coordinator -> PUB       ClusterEvent

Hybrid scheduling (daemons/node/hybrid_mode.py): a peer refers a request that needs a cold
start, an eviction or a migration to the coordinator with a `Schedule` (answered Placement
| Error, Progress while it waits), and follows the coordinator's map:
                                                 coordinator -> PUB       ModelMap
    anyone -> daemon         StatusRequest       daemon -> asker          StatusReply

Coordinator failover (Binary Star, `daemons/coordinator/failover.py`):
    coordinator -> PUB       CoordinatorState    (its peer and observers subscribe)
    coordinator -> node      WitnessQuery        node -> coordinator      WitnessVote
    coordinator -> node      EpochNotice         (a new active coordinator fences the old one)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from daemons.core.schema import MAX_FRAME_BYTES, U63, Memo, Pattern, Range, Size

# Bounds of every field, declared once here and compiled by `schema.py`. A field left
# plain still gets its type's default bound (ints within ±2**53, finite floats, strs of
# 4096 characters, lists and maps of 4096 items), so a new field is never unbounded.
# Names (nodes, models, coordinators, request ids) and endpoints: at most 256 characters and
# no control characters (no newline, escape or NUL), so they are safe in logs, CSV cells and
# journal fields. Endpoints are checked for form where they are used (a bad one is a
# `bad_placement` outcome, not a silently dropped frame).
# `printable_ascii`: an ASCII str is accepted on str.isprintable() alone, without the regex (schema.py).
NAME_PATTERN = Pattern(r"[^\x00-\x1f\x7f-\x9f]{0,256}", "name (at most 256 characters, no control characters)",
                       printable_ascii=True)
ENDPOINT_PATTERN = Pattern(r"[^\x00-\x1f\x7f-\x9f]{0,256}", "endpoint (e.g. tcp://10.0.0.3:5560)",
                           printable_ascii=True)
Name = Annotated[str, Size(256), NAME_PATTERN]
Endpoint = Annotated[str, Size(256), ENDPOINT_PATTERN]
# codes, kinds, states, roles: short, no control characters
Word = Annotated[str, Size(64), Pattern(r"[^\x00-\x1f\x7f-\x9f]{0,64}", "word (no control characters)",
                                          printable_ascii=True)]
Text = Annotated[str, Size(4096)]  # free text: reasons, error messages
MAX_TOKENS = 1 << 20  # per request, prompt or output: well above any model's context
Tokens = Annotated[int, Range(0, MAX_TOKENS)]
Count = Annotated[int, Range(0, 1 << 31)]  # queue depths, requests in flight
Epoch = Annotated[int, Range(0, 1 << 31)]  # a coordinator's epoch grows by one per failover
Nonce = Annotated[int, Range(0, U63)]  # boot nonces and sequence numbers
Bytes = Annotated[int, Range(0, 1 << 53)]  # memory sizes
Seconds = Annotated[float, Range(0.0, 1e7)]  # durations and waits (~4 months)
WallClock = Annotated[float, Range(0.0, 1e11)]  # time.time(), for logs only
Hops = Annotated[int, Range(0, 16)]
MAX_PROMPT_CHARS = 1 << 20  # the envelope's frame limit bounds it anyway
MAX_NODES = 16_384  # a list of nodes in one message (exclude lists, routes, status rows)

Action = Literal["SERVE", "COLD_START", "MIGRATE"]
ACTIONS: tuple[str, ...] = ("SERVE", "COLD_START", "MIGRATE")


@dataclass(frozen=True, slots=True)
class Schedule:
    """Ask the coordinator where to run a request."""

    TYPE: ClassVar[str] = "schedule"
    request_id: Name
    model: Name
    prompt_tokens: Tokens
    max_new_tokens: Tokens
    priority: Annotated[int, Range(-1000, 1000)] = 0
    exclude: Annotated[list[Name], Size(256)] = field(default_factory=list)  # nodes that already failed this request
    # Seconds this request may wait for capacity in the coordinator's admission queue before
    # it is answered `queue_timeout` (0: the coordinator's queue_timeout_s; never longer).
    timeout_s: Seconds = 0.0
    # Its class's TTFT SLO (0: none): `--admission slo` sheds it when the predicted TTFT exceeds it.
    slo_ttft_s: Seconds = 0.0


@dataclass(frozen=True, slots=True)
class Placement:
    """The coordinator's decision for one request."""

    TYPE: ClassVar[str] = "placement"
    request_id: Name
    node: Name
    endpoint: Endpoint
    action: Word
    est_wait_s: Seconds
    reason: Text
    decision_s: Seconds = 0.0  # time the policy took, for the decision-latency figures
    epoch: Epoch = 0  # the deciding coordinator's epoch (0: a coordinator without failover)


@dataclass(frozen=True, slots=True)
class Infer:
    """Run one request on a node (or, in gossip mode, let the node place it)."""

    TYPE: ClassVar[str] = "infer"
    request_id: Name
    model: Name
    prompt: Annotated[str, Size(MAX_PROMPT_CHARS)]
    max_new_tokens: Tokens
    action: Word = "SERVE"
    hops: Hops = 0
    max_hops: Hops = 1
    route: Annotated[list[Name], Size(16)] = field(default_factory=list)  # nodes this request has passed through
    # The epoch of the coordinator that placed it: a node that knows a newer epoch refuses
    # it (`stale_epoch`), so a deposed coordinator's placements never run. 0: not fenced.
    epoch: Epoch = 0
    # Its class (daemons/policy/priority.py): higher waits less in a node's queues; and its
    # class's TTFT SLO (0: none), for a gossip peer's `--admission slo`.
    priority: Annotated[int, Range(-1000, 1000)] = 0
    slo_ttft_s: Seconds = 0.0
    # Send every generated token to the asker (StreamToken): for tests and benchmarks that
    # check a stream token by token; off by default (server.py says why Progress suffices).
    stream: bool = False
    # Hybrid scheduling (daemons/node/hybrid_mode.py): which path placed it, `peer`,
    # `coordinator` or `peer-degraded`; the serving node echoes it in Done. "": another arm.
    decided_by: Word = ""


@dataclass(frozen=True, slots=True)
class FirstToken:
    """The first generated token of a request reached the node."""

    TYPE: ClassVar[str] = "first_token"
    request_id: Name
    node: Name
    text: Text = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """A node still holds a request: sent about once a second from acceptance until Done.

    It is the request's liveness signal: the load generator retries an attempt only when its
    node is known gone or silent (no Progress, token or answer) for its attempt timeout.
    Periodic rather than per token: its cost is one small frame per request per second,
    whatever the output length (daemons/node/server.py says why).
    """

    TYPE: ClassVar[str] = "progress"
    request_id: Name
    node: Name
    tokens: Tokens = 0  # generated so far (0 while it waits for a load or a batch slot)


@dataclass(frozen=True, slots=True)
class StreamToken:
    """One generated token of a request sent with `Infer.stream`; `index` counts from 0 over
    the whole request, across a migration (the destination continues the source's count)."""

    TYPE: ClassVar[str] = "token"
    request_id: Name
    node: Name
    index: Tokens
    text: Text = ""


@dataclass(frozen=True, slots=True)
class Migrate:
    """Move a running request from `node` (which this goes to) to `to_node` at `endpoint`.

    `request_id` "": the node picks one of its running requests (of `model`, if given)."""

    TYPE: ClassVar[str] = "migrate"
    request_id: Name
    node: Name
    to_node: Name
    endpoint: Endpoint
    reason: Text = ""
    model: Name = ""


@dataclass(frozen=True, slots=True)
class Resume:
    """Source -> destination: recompute the request's context (`prompt` + `generated`, no KV
    bytes) and, when `final`, continue it: `tokens` were generated already (the next index),
    `max_new_tokens` remain. A non-final round only prefills and answers ResumeReady."""

    TYPE: ClassVar[str] = "resume"
    request_id: Name
    model: Name
    prompt: Annotated[str, Size(MAX_PROMPT_CHARS)]
    generated: Annotated[str, Size(MAX_PROMPT_CHARS)]
    tokens: Tokens
    max_new_tokens: Tokens
    round: Annotated[int, Range(0, 1024)] = 0
    final: bool = False


@dataclass(frozen=True, slots=True)
class ResumeReady:
    """Destination -> source: round `round` recomputed `tokens` generated tokens in `prefill_s`."""

    TYPE: ClassVar[str] = "resume_ready"
    request_id: Name
    node: Name
    round: Annotated[int, Range(0, 1024)]
    tokens: Tokens
    prefill_s: Seconds = 0.0
    load_s: Seconds = 0.0  # waiting for the model's instance (a load, if it was not there)


@dataclass(frozen=True, slots=True)
class Handover:
    """Source -> loadgen: from token `tokens` on, `to_node` generates the request (its
    reports reach the asker through `node`, which relays them)."""

    TYPE: ClassVar[str] = "handover"
    request_id: Name
    node: Name
    to_node: Name
    tokens: Tokens


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop serving `request_id` on `node` and free its slot: another node won the race.

    A node that gets one for another node relays it there (gossip peers know the endpoint).
    """

    TYPE: ClassVar[str] = "cancel"
    request_id: Name
    node: Name
    reason: Text = ""


@dataclass(frozen=True, slots=True)
class Reassigned:
    """Gossip: the peer serving a forwarded request is gone (its connection dropped), and the
    forwarding peer is placing the request again; `node` is the one that lost it."""

    TYPE: ClassVar[str] = "reassigned"
    request_id: Name
    node: Name
    reason: Text = ""


@dataclass(frozen=True, slots=True)
class Done:
    """A request finished; `timings` are the backend's server-side figures in seconds."""

    TYPE: ClassVar[str] = "done"
    request_id: Name
    node: Name
    tokens: Tokens
    finish_reason: Word
    # What the node did (daemons/node/actions.py): SERVE only when the model was ready as
    # the request arrived; SERVE_LOADING when it waited for a load it did not start.
    action: Word = "SERVE"
    hops: Hops = 0
    timings: Annotated[dict[str, Seconds], Size(32)] = field(default_factory=dict)
    decided_by: Word = ""  # Infer.decided_by of the request served (hybrid), for requests.csv


@dataclass(frozen=True, slots=True)
class Error:
    """A request failed; `code` is a stable machine-readable reason."""

    TYPE: ClassVar[str] = "error"
    request_id: Name
    code: Word
    message: Text
    node: Name = ""


@dataclass(frozen=True, slots=True)
class ModelState:
    """One model on one node, as the node sees it."""

    model: Name
    state: Word  # loading | ready | failed | evicting
    queue_depth: Count = 0
    running: Count = 0
    memory_bytes: Bytes = 0
    last_used: Annotated[float, Range(-1e12, 1e12)] = 0.0  # node-local monotonic seconds, only compared on that node


@dataclass(frozen=True, slots=True)
class GpuState:
    index: Annotated[int, Range(0, 1024)]
    name: Annotated[str, Size(256)]
    memory_total: Bytes
    memory_used: Bytes
    utilization: Annotated[float, Range(0.0, 1.0)] = 0.0  # compute, 0..1 (see NodeState.gpu_utilization), not memory


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A model this node can load: what it would occupy and how long loading would take."""

    model: Name
    footprint_bytes: Bytes
    load_s: Seconds


@dataclass(frozen=True, slots=True)
class ModelEstimate:
    """What a node has observed of one model (EWMAs, daemons/policy/estimates.py): its warm
    TTFT, TPOT and load time, and how many observations are behind them."""

    model: Name
    ttft_s: Seconds = 0.0
    tpot_s: Seconds = 0.0
    load_s: Seconds = 0.0
    requests: Count = 0
    tpots: Count = 0
    loads: Count = 0


@dataclass(frozen=True, slots=True)
class Prewarm:
    """Coordinator -> node: load `model` now, ahead of forecast demand (daemons/policy/prewarm.py),
    evicting the idle models `evict` first (least expected use); no answer (the load shows in
    the node's state and its `prewarm` event)."""

    TYPE: ClassVar[str] = "prewarm"
    model: Name
    evict: Annotated[list[Name], Size(64)] = field(default_factory=list)
    reason: Text = ""
    # The forecast that justified it (req/s): until the horizon has passed, the node counts it as
    # the model's expected use, so its own evictions do not take the model it was just told to load.
    forecast_rps: Annotated[float, Range(0.0, 1e6)] = 0.0


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node's published state: sent on every change and at least every second."""

    TYPE: ClassVar[str] = "state"
    node: Name
    endpoint: Endpoint
    gen: Nonce  # boot nonce: a restarted node starts a new generation
    seq: Nonce  # increases with every publication of one generation
    gpus: Annotated[list[GpuState], Size(64)]
    models: Annotated[list[ModelState], Size(1024)]
    queue_depth: Count
    gpu_backend: Word = "emulated"
    scheduler: Word = "centralized"
    in_flight: Count = 0
    # The same in almost every state a node publishes: validated once, then recognised (Memo).
    catalog: Annotated[list[CatalogEntry], Size(1024), Memo()] = field(default_factory=list)
    # GPU compute utilisation 0..1 over about the last second (mean over the node's GPUs):
    # NVML's utilization.gpu, or on an emulated GPU the busy fraction of its instances'
    # engine steps (daemons/node/gpu.py). None: a node that does not report it.
    gpu_utilization: Annotated[float, Range(0.0, 1.0)] | None = None
    # Requests waiting in the node's own slot queue per priority (str of the int: wire maps
    # have string keys), so a policy counts only the work a request would queue behind.
    waiting_by_priority: Annotated[dict[str, Count], Size(64)] = field(default_factory=dict)
    # Learned affinity: the node's own per-model observations (empty: none yet, or an older node).
    estimates: Annotated[list[ModelEstimate], Size(1024)] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """Something observers should know: a node joined, died, came back, a failover."""

    TYPE: ClassVar[str] = "event"
    kind: Word
    node: Name
    detail: Text = ""
    ts: WallClock = 0.0  # wall clock of the emitter, for the events log only


@dataclass(frozen=True, slots=True)
class Probe:
    """Sparrow-style probe from a gossip peer: answer when you could take this request."""

    TYPE: ClassVar[str] = "probe"
    request_id: Name
    model: Name


@dataclass(frozen=True, slots=True)
class ProbeReply:
    TYPE: ClassVar[str] = "probe_reply"
    request_id: Name
    node: Name
    load: Count
    ready: bool  # the model is loaded there


@dataclass(frozen=True, slots=True)
class ModelMap:
    """Hybrid scheduling: the coordinator's model -> nodes map (ready, loading or just placed
    there), on its events PUB; peers place warm requests on it (daemons/node/hybrid_mode.py)."""

    TYPE: ClassVar[str] = "model_map"
    coordinator: Name
    epoch: Epoch
    seq: Nonce  # grows with every map one coordinator process publishes
    models: Annotated[dict[str, Annotated[list[Name], Size(MAX_NODES)]], Size(1024)]
    ts: WallClock = 0.0


@dataclass(frozen=True, slots=True)
class StatusRequest:
    TYPE: ClassVar[str] = "status_request"


@dataclass(frozen=True, slots=True)
class StatusReply:
    """A daemon's view of the cluster, for `schedctl status`."""

    TYPE: ClassVar[str] = "status"
    role: Word
    nodes: Annotated[list[dict[str, Any]], Size(MAX_NODES)]
    # role-specific, e.g. a coordinator's failover state
    info: Annotated[dict[str, Any], Size(256)] = field(default_factory=dict)


# Room for the envelope and a reply's `info` under the frame limit.
STATUS_BUDGET_BYTES = MAX_FRAME_BYTES - (64 << 10)


@dataclass(frozen=True, slots=True)
class CoordinatorState:
    """A coordinator's heartbeat on its events PUB: who it is, its Binary Star state, its epoch."""

    TYPE: ClassVar[str] = "coordinator_state"
    name: Name
    role: Word  # primary | backup | standalone (configured)
    state: Word  # primary | backup | active | passive (now)
    epoch: Epoch
    endpoint: Endpoint  # its request ROUTER
    ts: WallClock = 0.0


@dataclass(frozen=True, slots=True)
class WitnessQuery:
    """A coordinator about to take over asks a node: can you still reach my peer?"""

    TYPE: ClassVar[str] = "witness_query"
    candidate: Name
    epoch: Epoch  # the epoch the candidate would take
    peer: Endpoint  # the silent coordinator's request endpoint, to probe
    probe_s: Annotated[float, Range(0.0, 60.0)] = 1.0  # how long the node waits for the peer's answer


@dataclass(frozen=True, slots=True)
class WitnessVote:
    TYPE: ClassVar[str] = "witness_vote"
    node: Name
    epoch: Epoch
    granted: bool  # True: the peer did not answer (take over); False: it did
    reason: Text = ""


@dataclass(frozen=True, slots=True)
class EpochNotice:
    """A coordinator has become active in `epoch`: refuse placements of older epochs."""

    TYPE: ClassVar[str] = "epoch_notice"
    coordinator: Name
    epoch: Epoch


MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Schedule, Placement, Infer, FirstToken, Done, Error, NodeState, ClusterEvent, Probe,
                ProbeReply, StatusRequest, StatusReply, CoordinatorState, WitnessQuery, WitnessVote,
                EpochNotice, Progress, Cancel, Reassigned, StreamToken, Migrate, Resume, ResumeReady,
                Handover, ModelMap, Prewarm)
}
