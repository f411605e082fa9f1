"""Reading one results directory written by `schedctl experiment run`.

A run directory `results/<name>_<scheduler>_<YYYYmmdd_HHMMSS>/` holds four input files.
All times are seconds from the run's t = 0 (the first scheduled request), as floats;
an empty cell means "did not happen".

requests.csv  one row per planned request:
    request_id, model, prompt_tokens, max_new_tokens, scheduled_s, sent_s, placed_s,
    first_token_s, done_s, node, action (SERVE | SERVE_LOADING | COLD_START | MIGRATE |
    empty), hops, tokens (generated), status (ok | error | timeout), error (reason, empty
    if ok). `action` is what the serving node reports it did: SERVE only when the model
    was loaded and ready when the request reached it; SERVE_LOADING when it waited for
    a load another request had started (cold for this request too). `sent_s` (first
    send) is optional: without it the measured window starts at `scheduled_s`.
nodes.csv     one row per node per second of telemetry:
    t_s, node, memory_used, memory_total, memory_utilization (0..1), queue_depth,
    in_flight, loaded_models (";"-joined), alive (1 | 0), and optionally
    gpu_utilization (0..1 compute: NVML's utilization.gpu, or the emulator's busy
    fraction of engine steps; empty or absent = not measured)
events.csv    t_s, kind, target, detail; may hold only its header.
manifest.json {"name", "scheduler", "policy", "start_time", "end_time", "duration_s",
               "seed", "slo": {"ttft_ms", "tpot_ms", "e2el_ms"}, "planned_requests", ...}

Only the columns this package uses are required; extra columns are ignored so the runner
can add fields without breaking old reports. A missing file, a missing column or a cell
that is not a number is a ConfigError naming the file, the line and the fix.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemons.core.errors import ConfigError

REQUESTS = "requests.csv"
NODES = "nodes.csv"
EVENTS = "events.csv"
MANIFEST = "manifest.json"

REQUEST_COLUMNS = ("request_id", "scheduled_s", "first_token_s", "done_s", "action", "tokens", "status")
NODE_COLUMNS = ("t_s", "node", "memory_utilization", "queue_depth")
EVENT_COLUMNS = ("t_s", "kind", "target", "detail")

# Every action a node reports for a request it served (daemons/node/actions.py);
# only SERVE is a cache hit: the model was ready when the request reached the node.
ACTIONS = ("SERVE", "SERVE_LOADING", "COLD_START", "MIGRATE")
CACHE_HITS = ("SERVE",)
OK = "ok"
TIMEOUT = "timeout"
NOT_SENT = "not_sent"  # the run was stopped before its send time (daemons/loadgen/recorder.py)

_FIX = "it should be written by `schedctl experiment run`; re-run the experiment or repair the file"


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; None means "not part of goodput"."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def overridden_by(self, other: Slo) -> Slo:
        """This SLO with every value that `other` sets replaced (command-line flags win)."""
        return Slo(
            ttft_ms=self.ttft_ms if other.ttft_ms is None else other.ttft_ms,
            tpot_ms=self.tpot_ms if other.tpot_ms is None else other.tpot_ms,
            e2el_ms=self.e2el_ms if other.e2el_ms is None else other.e2el_ms,
        )

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))


@dataclass(frozen=True)
class Manifest:
    """The fields of manifest.json the report uses; `raw` keeps the whole document."""

    name: str
    scheduler: str
    policy: str
    start_time: str
    end_time: str
    duration_s: float | None
    planned_requests: int | None
    slo: Slo
    raw: dict[str, Any]


@dataclass(frozen=True)
class RequestRecord:
    """One planned request and what happened to it (times in seconds from t = 0)."""

    request_id: str
    scheduled_s: float
    first_token_s: float  # NaN when no token came back
    done_s: float  # NaN when the request never finished
    action: str  # upper-cased; ACTIONS, "" when never placed, or a newer runner's own kind
    tokens: int
    status: str  # ok | error | timeout (lower-cased)
    node: str = ""
    error: str = ""
    sent_s: float = math.nan  # first send; NaN when not sent or not recorded

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


@dataclass(frozen=True)
class NodeSample:
    """One node's telemetry at one second."""

    t_s: float
    node: str
    memory_utilization: float  # 0..1, NaN when unknown
    queue_depth: float
    alive: bool
    gpu_utilization: float = math.nan  # 0..1 compute; NaN when not measured


@dataclass(frozen=True)
class Event:
    """A fault, detection, failover or recovery, as the runner logged it."""

    t_s: float
    kind: str  # lower-cased
    target: str
    detail: str


@dataclass(frozen=True)
class RunData:
    """Everything in one results directory."""

    run_dir: Path
    manifest: Manifest
    requests: tuple[RequestRecord, ...]
    nodes: tuple[NodeSample, ...]
    events: tuple[Event, ...]


def load_run(run_dir: Path) -> RunData:
    """Read and validate the four input files of a results directory."""
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such results directory; pass a directory under results/ "
                          "written by `schedctl experiment run`")
    return RunData(
        run_dir=run_dir,
        manifest=load_manifest(run_dir / MANIFEST),
        requests=tuple(_request(row, ctx) for row, ctx in _rows(run_dir / REQUESTS, REQUEST_COLUMNS)),
        nodes=tuple(_node_sample(row, ctx) for row, ctx in _rows(run_dir / NODES, NODE_COLUMNS)),
        events=tuple(_event(row, ctx) for row, ctx in _rows(run_dir / EVENTS, EVENT_COLUMNS)),
    )


def load_manifest(path: Path) -> Manifest:
    doc = _json_object(path)
    for key in ("name", "scheduler"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"{path}: missing or empty {key!r}; {_FIX}")
    slo = doc.get("slo") or {}
    if not isinstance(slo, dict):
        raise ConfigError(f"{path}: 'slo' must be an object with ttft_ms, tpot_ms, e2el_ms; {_FIX}")
    return Manifest(
        name=doc["name"],
        scheduler=doc["scheduler"],
        policy=str(doc.get("policy") or ""),
        start_time=str(doc.get("start_time") or ""),
        end_time=str(doc.get("end_time") or ""),
        duration_s=_json_number(doc.get("duration_s"), "duration_s", path),
        planned_requests=_json_int(doc.get("planned_requests"), path),
        slo=Slo(*(_json_number(slo.get(k), f"slo.{k}", path) for k in ("ttft_ms", "tpot_ms", "e2el_ms"))),
        raw=doc,
    )


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; {_FIX}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); {_FIX}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top; {_FIX}")
    return doc


def _json_number(value: object, key: str, path: Path) -> float | None:
    if value is None:
        return None
    # bool is an int in Python, and `true` is never a meaningful duration or SLO.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: {key!r} must be a number or null, got {value!r}; {_FIX}")
    return float(value)


def _json_int(value: object, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{path}: 'planned_requests' must be a non-negative integer, got {value!r}; {_FIX}")
    return value


@dataclass(frozen=True)
class _Ctx:
    """Where a row came from, so a bad cell can be reported as file:line."""

    path: Path
    line: int

    def fail(self, column: str, value: str, want: str) -> ConfigError:
        where = f"{self.path}:{self.line}"
        return ConfigError(f"{where}: column {column!r} must be {want}, got {value!r}; {_FIX}")


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[dict[str, str], _Ctx]]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; {_FIX}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{path}: header lacks column(s) {', '.join(missing)}; {_FIX}")
        for row in reader:
            if None in row:  # DictReader files surplus cells under the key None
                raise ConfigError(f"{path}:{reader.line_num}: more cells than header columns; {_FIX}")
            yield row, _Ctx(path, reader.line_num)


def _float(row: dict[str, str], column: str, ctx: _Ctx, *, required: bool = False) -> float:
    text = (row.get(column) or "").strip()
    if not text:
        if required:
            raise ctx.fail(column, text, "a number")
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ctx.fail(column, text, "a number") from None
    if math.isinf(value):
        raise ctx.fail(column, text, "a finite number")
    return value


def _int(row: dict[str, str], column: str, ctx: _Ctx) -> int:
    value = _float(row, column, ctx)
    if math.isnan(value):
        return 0
    if value != int(value) or value < 0:
        raise ctx.fail(column, row[column], "a non-negative integer")
    return int(value)


def _request(row: dict[str, str], ctx: _Ctx) -> RequestRecord:
    return RequestRecord(
        request_id=row["request_id"].strip(),
        scheduled_s=_float(row, "scheduled_s", ctx, required=True),
        first_token_s=_float(row, "first_token_s", ctx),
        done_s=_float(row, "done_s", ctx),
        action=row["action"].strip().upper(),
        tokens=_int(row, "tokens", ctx),
        status=row["status"].strip().lower(),
        node=(row.get("node") or "").strip(),
        error=(row.get("error") or "").strip(),
        sent_s=_float(row, "sent_s", ctx),
    )


def _node_sample(row: dict[str, str], ctx: _Ctx) -> NodeSample:
    util = _float(row, "memory_utilization", ctx)
    if math.isnan(util):
        # The runner may leave the ratio empty and give the raw bytes instead.
        used, total = _float(row, "memory_used", ctx), _float(row, "memory_total", ctx)
        util = used / total if total > 0 else math.nan
    alive = (row.get("alive") or "1").strip().lower()
    if alive not in ("1", "0", "true", "false"):
        raise ctx.fail("alive", alive, "1 or 0")
    return NodeSample(
        t_s=_float(row, "t_s", ctx, required=True),
        node=row["node"].strip(),
        memory_utilization=util,
        queue_depth=_float(row, "queue_depth", ctx),
        alive=alive in ("1", "true"),
        gpu_utilization=_float(row, "gpu_utilization", ctx),
    )


def _event(row: dict[str, str], ctx: _Ctx) -> Event:
    return Event(
        t_s=_float(row, "t_s", ctx, required=True),
        kind=row["kind"].strip().lower(),
        target=row["target"].strip(),
        detail=row["detail"].strip(),
    )
