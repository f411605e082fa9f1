"""requests.csv: one row per planned request and what happened to it.

Written by the load generator (daemons/loadgen/results.py turns its records into rows),
read by the report. Times are seconds from the run's t = 0 on the sender's monotonic
clock, to the microsecond; `ttft_s` and `latency_s` are measured from `scheduled_s`, the
intended send time (no coordinated omission). `action` is what the serving node did
(Done.action: SERVE only when the model was ready as the request arrived, SERVE_LOADING
when it waited on another request's load); `placed_action` is what the coordinator's
latest placement expected (empty in gossip mode). `failed_nodes` (`;`-joined) are the nodes
that failed an attempt; `server_timings` is the node's own breakdown as JSON. `class` is
the request's workload class (empty without classes) and `slo_ttft_ms` / `slo_tpot_ms`
its class's SLOs (empty: none, the run's apply). Status `shed`: `--admission slo` refused
it because its predicted TTFT exceeded its class's SLO (daemons/policy/slo.py).

A request moved by a live migration (daemons/node/migration.py) names its first move:
`migrated_from` and `migrated_to` (empty: never migrated), `migration_tokens` (tokens the
client had at the switch), `migration_s` (when the client heard of the switch, from t = 0),
and the source's figures `migration_resume_s` (switch to the destination's first token)
and `migration_gap_s` (the longest wait between two tokens from the switch on).

`decided_by` (hybrid runs, daemons/policy/hybrid.py): which path placed a request that was
served: `peer` (warm, the gossip policy), `coordinator` (a cold start, an eviction or a
migration, referred), `peer-degraded` (the coordinator unreachable); empty in other arms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from daemons.rundir.cells import NAN, Row, micro, read_rows, write_rows

REQUESTS = "requests.csv"

OK, ERROR, TIMEOUT = "ok", "error", "timeout"
# A request the run was stopped before sending: neither a success nor a failure of the
# system under test, so reports keep it out of success rates and failure counts.
NOT_SENT = "not_sent"
# Refused on purpose by SLO admission: its own outcome, neither served nor a fault.
SHED = "shed"

# The file's columns, in order. ttft_s and latency_s are RequestRow properties.
REQUEST_COLUMNS = (
    "request_id", "model", "prompt_tokens", "max_new_tokens",
    "scheduled_s", "sent_s", "placed_s", "first_token_s", "done_s", "ttft_s", "latency_s",
    "node", "action", "hops", "tokens", "finish_reason", "status", "error", "error_detail",
    "est_wait_s", "decision_s", "server_timings", "attempts", "failed_nodes",
    "coordinator", "epoch", "reroutes", "placed_action", "class", "slo_ttft_ms", "slo_tpot_ms",
    "migrated_from", "migrated_to", "migration_tokens", "migration_s", "migration_resume_s", "migration_gap_s",
    "decided_by",
)
# What a file needs to be read (a hand-made or older file may have only these).
REQUEST_REQUIRED = ("request_id", "scheduled_s", "first_token_s", "done_s", "action", "tokens", "status")


@dataclass(frozen=True)
class RequestRow:
    """One row of requests.csv. Times in seconds from t = 0, NaN: did not happen; None: unknown."""

    request_id: str
    scheduled_s: float
    model: str = ""
    prompt_tokens: int | None = None
    max_new_tokens: int | None = None
    sent_s: float = NAN  # first send; NaN when never sent
    placed_s: float = NAN
    first_token_s: float = NAN
    done_s: float = NAN  # NaN unless it completed
    node: str = ""
    action: str = ""  # upper-case: SERVE | SERVE_LOADING | COLD_START | MIGRATE, "" when never placed
    hops: int | None = None
    tokens: int | None = None  # generated; None when no Done came
    finish_reason: str = ""
    status: str = ""  # ok | error | timeout | shed | not_sent (lower-case)
    error: str = ""  # a stable code, empty if ok
    error_detail: str = ""
    est_wait_s: float = NAN
    decision_s: float = NAN
    server_timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    failed_nodes: tuple[str, ...] = ()
    coordinator: str = ""
    epoch: int = 0
    reroutes: int = 0
    placed_action: str = ""
    klass: str = ""  # column `class`
    slo_ttft_ms: float = NAN  # its class's SLOs; NaN: none
    slo_tpot_ms: float = NAN
    migrated_from: str = ""  # a live migration's source, "" when it was never migrated
    migrated_to: str = ""
    migration_tokens: int | None = None  # tokens the client had at the switch
    migration_s: float = NAN  # when the client heard of the switch
    migration_resume_s: float = NAN  # switch to the destination's first token (the source's clock)
    migration_gap_s: float = NAN  # longest wait between two tokens from the switch on
    decided_by: str = ""  # hybrid: peer | coordinator | peer-degraded (daemons/policy/hybrid.py); "" else

    @property
    def migrated(self) -> bool:
        return bool(self.migrated_to)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def ttft_s(self) -> float:
        """From the scheduled time, not the send time: open loop, no coordinated omission."""
        return self.first_token_s - self.scheduled_s

    @property
    def latency_s(self) -> float:
        return self.done_s - self.scheduled_s


def write_requests(path: str | Path, rows: Iterable[RequestRow]) -> None:
    """Write requests.csv (REQUEST_COLUMNS) at `path`."""
    write_rows(path, REQUEST_COLUMNS, rows, micro)


def read_requests(path: Path) -> list[RequestRow]:
    """Read requests.csv in file order; only REQUEST_REQUIRED columns must be present."""
    return [_request(row) for row in read_rows(path, REQUEST_REQUIRED)]


def _request(row: Row) -> RequestRow:
    return RequestRow(
        request_id=row.text("request_id"),
        model=row.text("model"),
        prompt_tokens=row.count("prompt_tokens"),
        max_new_tokens=row.count("max_new_tokens"),
        scheduled_s=row.number("scheduled_s", required=True),
        sent_s=row.number("sent_s"),
        placed_s=row.number("placed_s"),
        first_token_s=row.number("first_token_s"),
        done_s=row.number("done_s"),
        node=row.text("node"),
        action=row.text("action").upper(),
        hops=row.count("hops"),
        tokens=row.count("tokens"),
        finish_reason=row.text("finish_reason"),
        status=row.text("status").lower(),
        error=row.text("error"),
        error_detail=row.text("error_detail"),
        est_wait_s=row.number("est_wait_s"),
        decision_s=row.number("decision_s"),
        server_timings=row.mapping("server_timings"),
        attempts=row.count("attempts") or 0,
        failed_nodes=row.items("failed_nodes"),
        coordinator=row.text("coordinator"),
        epoch=row.count("epoch") or 0,
        reroutes=row.count("reroutes") or 0,
        placed_action=row.text("placed_action"),
        klass=row.text("class"),
        slo_ttft_ms=row.number("slo_ttft_ms"),
        slo_tpot_ms=row.number("slo_tpot_ms"),
        migrated_from=row.text("migrated_from"),
        migrated_to=row.text("migrated_to"),
        migration_tokens=row.count("migration_tokens"),
        migration_s=row.number("migration_s"),
        migration_resume_s=row.number("migration_resume_s"),
        migration_gap_s=row.number("migration_gap_s"),
        decided_by=row.text("decided_by"),
    )

