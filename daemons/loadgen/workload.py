"""The workload model: what requests to send and when, generated up front from a seed.

Arrivals follow vLLM `bench serve` (vLLM benchmarks/serve.py): gaps ~ Gamma(shape = 1/CV²,
scale = 1/(rps·shape)), so the mean gap is 1/rps and CV 1 is Poisson; exactly
N = round(rps × duration) requests; the cumulative offsets are rescaled so the last one is
exactly N/rps, which removes the 1-2 % throughput noise between seeds. Or a trace is
replayed with its own timestamps.

The whole schedule exists before the first send (wrk2 README: no coordinated omission), so both
schedulers can replay the identical list and the sender never computes while it paces.

`WorkloadSpec.from_dict` reads a `[workload]` TOML table; its keys are the field names:

    [workload]
    duration_s = 300          # seconds of arrivals (trace replay: 0 = the whole trace)
    rps = 5.0                 # mean requests per second (ignored when replaying a trace)
    cv = 8.0                  # coefficient of variation of the gaps: 1 Poisson, 0 constant
    seed = 42                 # one seed for everything random
    models = ["llama-7b", "mistral-7b"]
    popularity = "zipf"       # uniform | zipf | weights
    zipf_s = 1.0              # exponent for zipf; the first model listed is the most popular
    weights = [0.7, 0.3]      # for popularity = "weights": one per model
    popularity_shift = 3      # phases of equal length; each rotates the popularity ranking by one
    prompt_tokens = "lognormal:mean=1155,median=1020,max=8192"   # see distributions.py
    output_tokens = "uniform:16-256"
    trace = "AzureLLMInferenceTrace_conv.csv"   # optional
    arrivals = "auto"         # auto (trace if a trace is set) | gamma | trace
    trace_speedup = 1.0       # replay: divide the trace's times by this
    id_prefix = "r"           # request ids are <prefix><index, 6 digits>
    classes = "interactive:0.3:ttft=500,batch:0.7"   # optional, or [[workload.classes]]
                              # tables (classes.py): share, SLOs and lengths per class

Context: a request the model cannot take (prompt > max_input_tokens, or prompt +
max_new_tokens > max_total_tokens) would only measure a validation error, so a schedule is
fitted to its models' context (`fit_context`, limits from the model profiles:
`context_limits`): prompts are clipped to max_input_tokens, then max_new_tokens to what
is left, and the callers say how many were clipped. A prompt distribution whose *shortest*
prompt exceeds a model's context is refused instead (`check_context`): clipping would
replace the workload asked for with a constant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemons.core.errors import ConfigError
from daemons.loadgen.classes import WorkloadClass, parse_classes
from daemons.loadgen.distributions import (
    IntArray,
    LengthDist,
    parse_length,
    popularity_weights,
)
from daemons.loadgen.trace import Trace, read_trace
from daemons.policy.priority import CLASS_PRIORITY

DEFAULT_MODEL = "facebook/opt-125m"
# Azure LLM 2023 conversation trace statistics (Azure LLM inference trace 2023).
DEFAULT_PROMPT = LengthDist("lognormal", mean=1155, median=1020, max=8192)
DEFAULT_OUTPUT = LengthDist("lognormal", mean=211, median=129, max=1000)
ARRIVALS = ("auto", "gamma", "trace")
MAX_CV = 100.0
MAX_REQUESTS = 10_000_000
MAX_PHASES = 1000


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One request of a schedule: sent `t_s` seconds after the run's start."""

    request_id: str
    t_s: float
    model: str
    prompt_tokens: int
    max_new_tokens: int
    klass: str = ""  # its workload class ("": a workload without classes)
    slo_ttft_ms: float = 0.0  # its class's SLOs (0: none; the run's SLO applies)
    slo_tpot_ms: float = 0.0

    @property
    def priority(self) -> int:
        """Its class's priority (daemons/policy/priority.py); 0 without a class."""
        return CLASS_PRIORITY.get(self.klass, 0)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A reproducible workload; `plan(spec)` turns it into a list of requests."""

    duration_s: float = 300.0  # seconds of arrivals (trace replay: 0 = the whole trace)
    rps: float = 5.0  # mean requests per second
    cv: float = 8.0  # coefficient of variation of the gaps: 1 Poisson, 8 bursty, 0 constant
    seed: int = 42  # seeds every random choice: the same spec gives the same schedule
    models: tuple[str, ...] = (DEFAULT_MODEL,)  # model names, most popular first
    popularity: str = "uniform"  # uniform | zipf | weights: how requests pick a model
    zipf_s: float = 1.0  # popularity = zipf: the exponent
    weights: tuple[float, ...] = ()  # popularity = weights: one weight per model
    # A shifting model mix (for pre-warming and learned placement to have something to learn):
    # the run is cut into this many phases of equal length, and at each phase boundary the
    # popularity ranking rotates by one model, so the most popular model changes (0: no shift).
    popularity_shift: int = 0
    prompt_tokens: LengthDist | None = None  # None: the trace's column if replaying, else DEFAULT_PROMPT
    output_tokens: LengthDist | None = None  # None: the trace's column if replaying, else DEFAULT_OUTPUT
    trace: str = ""  # an Azure LLM inference trace CSV to replay
    arrivals: str = "auto"  # auto | gamma | trace: the rps/cv process, or a trace's timestamps (auto: trace if given)
    trace_speedup: float = 1.0  # trace replay: arrivals this many times faster
    id_prefix: str = "r"  # request ids are this prefix and six digits: r000042
    classes: tuple[WorkloadClass, ...] = ()  # traffic classes (classes.py); () = one class, as before

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "classes", parse_classes(list(self.classes)) if self.classes else ())
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        self._check_arrivals()
        self._check_models()
        for what, dist in (("prompt_tokens", self.prompt_tokens), ("output_tokens", self.output_tokens)):
            if dist is not None and dist.kind == "trace" and not self.trace:
                raise ConfigError(f"{what} = 'trace' needs a trace file; set trace (--trace FILE)")
        if not self.id_prefix or any(c in self.id_prefix for c in " ,\t\n\"'"):
            raise ConfigError(f"id_prefix {self.id_prefix!r} must be non-empty, "
                              "without spaces, commas or quotes")

    def _check_arrivals(self) -> None:
        if self.arrivals not in ARRIVALS:
            raise ConfigError(f"arrivals {self.arrivals!r} is unknown; use one of {', '.join(ARRIVALS)}")
        if self.replays_trace:
            if not self.trace:
                raise ConfigError("arrivals = 'trace' needs a trace file; set trace (--trace FILE)")
            if not (math.isfinite(self.duration_s) and self.duration_s >= 0):
                raise ConfigError(f"duration_s {self.duration_s} must be >= 0 (0 replays the whole trace)")
            if not (math.isfinite(self.trace_speedup) and self.trace_speedup > 0):
                raise ConfigError(f"trace_speedup {self.trace_speedup} must be > 0 (2 replays twice as fast)")
            return
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise ConfigError(f"duration {self.duration_s} s must be > 0; pass --duration SECONDS")
        if not (math.isfinite(self.rps) and self.rps > 0):
            raise ConfigError(f"rps {self.rps} must be > 0; pass --rps RATE")
        if not (math.isfinite(self.cv) and 0 <= self.cv <= MAX_CV):
            raise ConfigError(f"cv {self.cv} must be in 0..{MAX_CV:g} (1 = Poisson, 0 = constant gaps)")
        n = self.n_requests
        if not 1 <= n <= MAX_REQUESTS:
            raise ConfigError(f"rps × duration = {self.rps * self.duration_s:g} requests; it must round to "
                              f"1..{MAX_REQUESTS}; change --rps or --duration")

    def _check_models(self) -> None:
        if not self.models or any(not isinstance(m, str) or not m.strip() for m in self.models):
            raise ConfigError("models: give at least one non-empty model name (--models a,b)")
        if len(set(self.models)) != len(self.models):
            raise ConfigError("models: a model is listed twice; list each model once")
        popularity_weights(self.popularity, len(self.models), self.zipf_s, self.weights)
        shift = self.popularity_shift
        if isinstance(shift, bool) or not isinstance(shift, int) or not 0 <= shift <= MAX_PHASES:
            raise ConfigError(f"popularity_shift {shift!r} must be a whole number in 0..{MAX_PHASES} "
                              "(phases of the run; 0 = no shift)")

    @property
    def replays_trace(self) -> bool:
        """True when arrival times come from the trace rather than the gamma process."""
        return self.arrivals == "trace" or (self.arrivals == "auto" and bool(self.trace))

    @property
    def n_requests(self) -> int:
        """N = round(rps × duration) for generated arrivals (trace replays: see plan)."""
        return round(self.rps * self.duration_s)

    def prompt_dist(self) -> LengthDist:
        return self.prompt_tokens or (LengthDist("trace") if self.replays_trace else DEFAULT_PROMPT)

    def output_dist(self) -> LengthDist:
        return self.output_tokens or (LengthDist("trace") if self.replays_trace else DEFAULT_OUTPUT)

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> WorkloadSpec:
        """Build a spec from a `[workload]` TOML table (keys: see the module docstring)."""
        return from_dict(table)

    def to_dict(self) -> dict[str, Any]:
        """A TOML-ready table that `from_dict` reads back into an equal spec (for manifests)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, LengthDist):
                value = value.describe()
            elif f.name == "classes":
                value = [c.to_dict() for c in value] or None
            elif isinstance(value, tuple):
                value = list(value)
            if value is not None:
                out[f.name] = value
        return out


_NUMBERS = {"duration_s": float, "rps": float, "cv": float, "zipf_s": float, "trace_speedup": float,
            "seed": int, "popularity_shift": int}
_STRINGS = ("popularity", "trace", "arrivals", "id_prefix")


def from_dict(table: dict[str, Any]) -> WorkloadSpec:
    """Validate a `[workload]` table and build the spec; any problem is one ConfigError."""
    known = {f.name for f in dataclasses.fields(WorkloadSpec)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"[workload]: unknown key(s) {', '.join(unknown)}; "
                          f"valid keys: {', '.join(sorted(known))}")
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        where = f"[workload] {key}"
        if key in _NUMBERS:
            kwargs[key] = _number(value, _NUMBERS[key], where)
        elif key in _STRINGS:
            if not isinstance(value, str):
                raise ConfigError(f"{where}: expected a string, got {value!r}")
            kwargs[key] = value
        elif key in ("models", "weights"):
            kwargs[key] = _sequence(value, str if key == "models" else float, where)
        elif key == "classes":
            kwargs[key] = parse_classes(value, where)
        else:
            kwargs[key] = parse_length(value, where)
    return WorkloadSpec(**kwargs)


def _number(value: object, kind: type, where: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    return int(value) if kind is int else float(value)


def _sequence(value: object, kind: type, where: str) -> tuple[Any, ...]:
    if isinstance(value, str) and kind is str:
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    if kind is float:
        return tuple(_number(v, float, where) for v in value)
    if not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def gamma_offsets(rng: np.random.Generator, n: int, rps: float, cv: float) -> np.ndarray[Any, Any]:
    """Offsets of n arrivals with gamma gaps, rescaled so the last one is exactly n/rps."""
    if cv == 0:
        gaps = np.full(n, 1.0 / rps)
    else:
        shape = 1.0 / (cv * cv)
        gaps = rng.gamma(shape, 1.0 / (rps * shape), size=n)
    offsets = np.cumsum(gaps)
    if offsets[-1] > 0:  # all-zero gaps (absurd CV) cannot be rescaled; vLLM leaves them too
        offsets *= (n / rps) / offsets[-1]
    return offsets


def plan(spec: WorkloadSpec) -> list[PlannedRequest]:
    """Generate the whole schedule; the same spec (and trace file) gives the same list."""
    # Independent streams per random part: changing the length model keeps the arrivals.
    arrival_rng, model_rng, row_rng, prompt_rng, output_rng, class_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(spec.seed).spawn(6))
    trace = _load_trace(spec)
    if spec.replays_trace:
        assert trace is not None  # checked by WorkloadSpec
        times = trace.t_s / spec.trace_speedup
        rows: IntArray | None = np.arange(len(times), dtype=np.int64)
    else:
        times = gamma_offsets(arrival_rng, spec.n_requests, spec.rps, spec.cv)
        rows = row_rng.integers(0, len(trace), size=len(times)) if trace is not None else None
    n = len(times)
    probs = popularity_weights(spec.popularity, len(spec.models), spec.zipf_s, spec.weights)
    model_idx = shifted(model_rng.choice(len(spec.models), size=n, p=probs), times, spec.popularity_shift,
                        len(spec.models))
    prompts = _lengths(spec.prompt_dist(), prompt_rng, n, trace.context_tokens if trace else None, rows)
    outputs = _lengths(spec.output_dist(), output_rng, n, trace.generated_tokens if trace else None, rows)
    width = max(6, len(str(n - 1)))
    ids = [f"{spec.id_prefix}{i:0{width}d}" for i in range(n)]
    if not spec.classes:  # one anonymous class: the schedule of a workload before classes
        return [PlannedRequest(ids[i], float(times[i]), spec.models[model_idx[i]], int(prompts[i]),
                               int(outputs[i])) for i in range(n)]
    shares = np.array([c.share for c in spec.classes])
    class_idx = class_rng.choice(len(spec.classes), size=n, p=shares / shares.sum())
    for k, cls in enumerate(spec.classes):  # a class's own lengths replace the workload's for its requests
        mine = np.flatnonzero(class_idx == k)
        for dist, rng, column, drawn in ((cls.prompt_tokens, prompt_rng, trace.context_tokens if trace else None,
                                          prompts),
                                         (cls.output_tokens, output_rng, trace.generated_tokens if trace else None,
                                          outputs)):
            if dist is not None and len(mine):
                drawn[mine] = _lengths(dist, rng, len(mine), column, rows[mine] if rows is not None else None)
    return [PlannedRequest(ids[i], float(times[i]), spec.models[model_idx[i]], int(prompts[i]), int(outputs[i]),
                           (cls := spec.classes[class_idx[i]]).name, cls.ttft_ms, cls.tpot_ms) for i in range(n)]


def shifted(ranks: IntArray, times: np.ndarray[Any, Any], phases: int, n_models: int) -> IntArray:
    """Popularity ranks drawn as without a shift, mapped to models rotated by the phase of each
    request's time: in phase k, rank r is model (r + k) mod n. The draw itself is unchanged, so
    the arrivals, lengths and ranks of a shifted schedule equal the unshifted one's."""
    if phases <= 1 or n_models <= 1 or not len(times):
        return ranks
    end = float(times[-1]) or 1.0
    phase = np.minimum((np.asarray(times) / end * phases).astype(np.int64), phases - 1)
    return (ranks + phase) % n_models


def _load_trace(spec: WorkloadSpec) -> Trace | None:
    if not spec.trace:
        return None
    until = spec.duration_s * spec.trace_speedup if spec.replays_trace and spec.duration_s > 0 else math.inf
    return read_trace(spec.trace, until_s=until)


def _lengths(dist: LengthDist, rng: np.random.Generator, n: int, column: IntArray | None,
             rows: IntArray | None) -> IntArray:
    if dist.kind != "trace":
        return dist.sample(rng, n)
    assert column is not None and rows is not None  # checked by WorkloadSpec
    # A trace may record 0 tokens (e.g. failed requests); every request needs at least one.
    return np.clip(column[rows], 1, dist.max)


@dataclass(frozen=True, slots=True)
class ContextLimit:
    """What a server of one model takes: prompt <= max_input_tokens, prompt + output <= max_total_tokens."""

    max_input_tokens: int
    max_total_tokens: int

    def describe(self) -> str:
        return f"prompt <= {self.max_input_tokens}, prompt + output <= {self.max_total_tokens} tokens"


def context_limits(models: Iterable[str]) -> dict[str, ContextLimit]:
    """The context of every model with a profile (daemons/profiles); others are left out."""
    from daemons.profiles import ProfileError, load_model

    limits = {}
    for model in models:
        try:
            profile = load_model(model)
        except ProfileError:
            continue  # not profiled (a deployment's own model): its server checks lengths itself
        limits[model] = ContextLimit(profile.max_input_tokens, profile.max_total_tokens)
    return limits


def _shortest(dist: LengthDist) -> int | None:
    """The smallest length `dist` can draw (None: unknown until the trace is read)."""
    if dist.kind == "fixed":
        return min(dist.value, dist.max)
    if dist.kind == "uniform":
        return min(dist.low, dist.max)
    return None if dist.kind == "trace" else 1


def check_context(spec: WorkloadSpec, limits: Mapping[str, ContextLimit]) -> None:
    """A ConfigError naming the fix when every prompt the spec draws is too long for a model."""
    shortest = _shortest(spec.prompt_dist())
    if shortest is None:
        return
    too_short = {m: c for m, c in limits.items() if m in spec.models and shortest > c.max_input_tokens}
    if not too_short:
        return
    model, limit = next(iter(too_short.items()))
    fits = sorted(m for m, c in context_limits(_profiled()).items() if shortest <= c.max_input_tokens)
    other = f" or pick a model with a longer context (--models {','.join(fits)})" if fits else \
        " (no profiled model takes that long a prompt)"
    raise ConfigError(f"prompt lengths {spec.prompt_dist().describe()} never fit {model}'s context "
                      f"({limit.describe()}): pass --prompt-tokens with lengths up to {limit.max_input_tokens}"
                      f"{other}")


def _profiled() -> list[str]:
    from daemons.profiles import known_models

    return known_models()


def fit_context(schedule: list[PlannedRequest],
                limits: Mapping[str, ContextLimit]) -> tuple[list[PlannedRequest], dict[str, int]]:
    """The schedule with every request clipped to its model's context, and per model how many were."""
    fitted, clipped = [], dict.fromkeys(limits, 0)
    for req in schedule:
        limit = limits.get(req.model)
        if limit is None:
            fitted.append(req)
            continue
        prompt = min(req.prompt_tokens, limit.max_input_tokens)
        output = min(req.max_new_tokens, limit.max_total_tokens - prompt)
        if (prompt, output) != (req.prompt_tokens, req.max_new_tokens):
            clipped[req.model] += 1
            req = dataclasses.replace(req, prompt_tokens=prompt, max_new_tokens=output)
        fitted.append(req)
    return fitted, {m: n for m, n in clipped.items() if n}


def plan_fitted(spec: WorkloadSpec) -> tuple[list[PlannedRequest], list[str]]:
    """`plan(spec)` fitted to the profiled models' context, and one line per model clipped."""
    limits = context_limits(spec.models)
    check_context(spec, limits)
    schedule, clipped = fit_context(plan(spec), limits)
    notes = [f"clipped {n} of {len(schedule)} requests for {m} to its context ({limits[m].describe()}); "
             "pass shorter --prompt-tokens / --output-tokens to keep the lengths as drawn"
             for m, n in clipped.items()]
    unknown = [m for m in spec.models if m not in limits]
    if unknown:
        notes.append(f"no profile for {', '.join(unknown)}: their lengths are not checked against a context "
                     "(the server refuses what it cannot take)")
    return schedule, notes
