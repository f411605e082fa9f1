"""Token-length distributions and model popularity: the random parts of a workload.

A length distribution is written as one short string so it fits a CLI flag and a TOML
value alike (a TOML table with the same keys also works, see `parse_length`):

    512                                   fixed: every request the same
    fixed:512                             the same, spelled out
    uniform:128-1024                      integers drawn uniformly from [128, 1024]
    lognormal:mean=1155,median=1020       log-normal with that mean and median
    lognormal:mean=1155,median=1020,max=8192   ... clipped to at most 8192
    trace                                 the trace's own column (needs a trace file)

Log-normal is parametrised by mean and median because those are what trace statistics
publish (Azure LLM inference trace 2023): median = e^mu, mean = e^(mu + sigma²/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from daemons.core.errors import ConfigError

LengthKind = Literal["fixed", "uniform", "lognormal", "trace"]
LENGTH_KINDS: tuple[str, ...] = ("fixed", "uniform", "lognormal", "trace")
PopularityKind = Literal["uniform", "zipf", "weights"]
POPULARITY_KINDS: tuple[str, ...] = ("uniform", "zipf", "weights")

# One token is one word on the wire; ~6 bytes a word keeps the largest prompt well under
# the envelope's 1 MiB frame cap.
MAX_TOKENS = 100_000
LENGTH_SYNTAX = "N, fixed:N, uniform:A-B, lognormal:mean=M,median=D[,max=X] or trace"

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class LengthDist:
    """How many tokens (prompt or output) each request gets."""

    kind: LengthKind = "fixed"
    value: int = 0  # fixed
    low: int = 0  # uniform, inclusive
    high: int = 0  # uniform, inclusive
    mean: float = 0.0  # lognormal
    median: float = 0.0  # lognormal
    max: int = MAX_TOKENS  # upper clip for every kind drawn at random

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ConfigError(f"length kind {self.kind!r} is unknown; use one of {LENGTH_SYNTAX}")
        if not 1 <= self.max <= MAX_TOKENS:
            raise ConfigError(f"length max={self.max} must be in 1..{MAX_TOKENS}")
        if self.kind == "fixed" and not 1 <= self.value <= MAX_TOKENS:
            raise ConfigError(f"fixed length {self.value} must be in 1..{MAX_TOKENS}")
        if self.kind == "uniform" and not 1 <= self.low <= self.high <= MAX_TOKENS:
            raise ConfigError(f"uniform:{self.low}-{self.high} needs 1 <= A <= B <= {MAX_TOKENS}")
        if self.kind == "lognormal" and not 0 < self.median <= self.mean:
            raise ConfigError(f"lognormal mean={self.mean} median={self.median}: needs 0 < median <= mean "
                              "(a log-normal's mean is never below its median)")

    def describe(self) -> str:
        """The string form `parse_length` reads back."""
        if self.kind == "fixed":
            return f"fixed:{self.value}"
        if self.kind == "uniform":
            return f"uniform:{self.low}-{self.high}"
        if self.kind == "lognormal":
            clip = f",max={self.max}" if self.max != MAX_TOKENS else ""
            return f"lognormal:mean={self.mean:g},median={self.median:g}{clip}"
        return "trace"

    def sample(self, rng: np.random.Generator, n: int) -> IntArray:
        """Draw `n` lengths; the "trace" kind is resolved by the caller, not here."""
        if self.kind == "fixed":
            return np.full(n, self.value, dtype=np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high, size=n, endpoint=True, dtype=np.int64)
        if self.kind == "lognormal":
            sigma = math.sqrt(2.0 * math.log(self.mean / self.median))
            draws = rng.lognormal(math.log(self.median), sigma, size=n)
            return np.clip(np.rint(draws), 1, self.max).astype(np.int64)
        raise ConfigError("a 'trace' length distribution needs a trace file; set `trace`")


def parse_length(value: object, what: str) -> LengthDist:
    """Read a length distribution from a CLI string, a TOML value or a TOML table."""
    if isinstance(value, LengthDist):
        return value
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected {LENGTH_SYNTAX}, got {value!r}")
    if isinstance(value, int):
        return LengthDist("fixed", value=value)
    if isinstance(value, dict):
        return _from_table(value, what)
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected {LENGTH_SYNTAX}, got {type(value).__name__}")
    try:
        return _from_text(value.strip())
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except ValueError:
        raise ConfigError(f"{what}: cannot read {value!r}; expected {LENGTH_SYNTAX}") from None


def _from_text(text: str) -> LengthDist:
    kind, _, args = text.partition(":")
    if text.isdigit():
        return LengthDist("fixed", value=int(text))
    if kind == "fixed":
        return LengthDist("fixed", value=int(args))
    if kind == "uniform":
        low, high = args.replace(",", "-").split("-")
        return LengthDist("uniform", low=int(low), high=int(high))
    if kind == "lognormal":
        params = dict(part.split("=", 1) for part in args.split(",") if part)
        return _lognormal(params)
    if kind == "trace" and not args:
        return LengthDist("trace")
    raise ConfigError(f"cannot read {text!r}; expected {LENGTH_SYNTAX}")


def _lognormal(params: dict[str, Any]) -> LengthDist:
    unknown = set(params) - {"mean", "median", "max"}
    if unknown or not {"mean", "median"} <= set(params):
        raise ConfigError(f"lognormal takes mean=, median= and optional max=, got {sorted(params)}")
    return LengthDist("lognormal", mean=float(params["mean"]), median=float(params["median"]),
                      max=int(params.get("max", MAX_TOKENS)))


def _from_table(table: dict[str, Any], what: str) -> LengthDist:
    kind = table.get("kind", "")
    try:
        if kind == "lognormal":
            return _lognormal({k: v for k, v in table.items() if k != "kind"})
        allowed = {"fixed": {"value"}, "uniform": {"low", "high"}, "trace": set()}.get(kind)
        if allowed is None:
            raise ConfigError(f"table needs kind = one of {', '.join(LENGTH_KINDS)}")
        extra = set(table) - allowed - {"kind", "max"}
        if extra:
            raise ConfigError(f"kind {kind!r} does not take {sorted(extra)}; it takes {sorted(allowed)}")
        return LengthDist(kind, **{k: int(v) for k, v in table.items() if k != "kind"})
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: numbers expected in {table!r}") from None


def popularity_weights(kind: str, n_models: int, zipf_s: float = 1.0,
                       weights: tuple[float, ...] = ()) -> npt.NDArray[np.float64]:
    """Probability of each model, in the order the models are listed.

    zipf: p(i) ∝ 1 / (i + 1)^s, so the first model listed is the most popular (the Azure LLM
    inference trace 2023: a few models get almost all requests).
    """
    if n_models < 1:
        raise ConfigError("models: list at least one model name")
    if kind == "uniform":
        raw = np.ones(n_models)
    elif kind == "zipf":
        if not zipf_s > 0:
            raise ConfigError(f"zipf exponent {zipf_s} must be > 0 (1.0 is classic Zipf)")
        raw = 1.0 / np.arange(1, n_models + 1, dtype=np.float64) ** zipf_s
    elif kind == "weights":
        raw = _check_weights(weights, n_models)
    else:
        raise ConfigError(f"popularity {kind!r} is unknown; use one of {', '.join(POPULARITY_KINDS)}")
    return np.asarray(raw / raw.sum(), dtype=np.float64)


def _check_weights(weights: tuple[float, ...], n_models: int) -> npt.NDArray[np.float64]:
    if len(weights) != n_models:
        raise ConfigError(f"weights: {len(weights)} given for {n_models} models; give one weight per model")
    raw = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(raw)) or np.any(raw < 0) or raw.sum() <= 0:
        raise ConfigError("weights must be finite, >= 0, and not all zero")
    return raw
