"""Per-model arrival-rate forecasts for predictive pre-warming: Holt's linear trend method.

Arrivals of each model are counted in buckets of `bucket_s` seconds; at each bucket's end
the model's rate x (requests per second in that bucket) updates a level ℓ and a trend b
(Holt, "Forecasting seasonals and trends by exponentially weighted moving averages",
1957; Hyndman & Athanasopoulos, Forecasting: Principles and Practice, 3rd ed., §8.2):

    ℓ_t = α·x_t + (1 − α)·(ℓ_{t−1} + b_{t−1})
    b_t = β·(ℓ_t − ℓ_{t−1}) + (1 − β)·b_{t−1}
    forecast(h) = max(0, ℓ_t + (h / bucket_s)·b_t)

Why Holt and not a plain EWMA: pre-warming must act *before* a burst peaks, i.e. while the
rate is still ramping up. An EWMA of a linear ramp lags it by (1 − α)/α buckets, so it
says "more load" only once the load is there; Holt's trend term extrapolates the ramp over
the load time (the horizon) and crosses the capacity threshold that much earlier. Why not
Holt-Winters: seasonality needs a known period and several periods of history, which a
run of minutes does not have; and bursts in LLM traces are not periodic at that scale.
The forecast is clipped at 0: a falling trend must not predict negative arrivals.

Defaults: α = 0.5, β = 0.3 with 1 s buckets react within 2-3 s to a burst (the load times
being pre-warmed for are ~2-20 s, REFERENCE §3.5) while a single busy second moves the
trend by only 0.15·x. A model with no arrival in a bucket observes 0 there, so an
abandoned model's forecast decays to 0 and it becomes the first candidate for eviction.

Pure and clock-free: the caller passes `now` (monotonic seconds) to every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from daemons.core.errors import ConfigError

DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 0.3
DEFAULT_BUCKET_S = 1.0
DEFAULT_HORIZON_S = 5.0
MAX_BUCKET_S = 60.0
MAX_HORIZON_S = 600.0
# A model not seen for this many buckets and forecast at ~0 is forgotten (bounded memory).
FORGET_BUCKETS = 600


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    """Holt's smoothing weights, the bucket width and how far ahead pre-warming looks."""

    alpha: float = DEFAULT_ALPHA  # level weight, 0 < α <= 1
    beta: float = DEFAULT_BETA  # trend weight, 0 <= β <= 1 (0: no trend, Holt becomes an EWMA)
    bucket_s: float = DEFAULT_BUCKET_S  # arrivals are counted per bucket
    horizon_s: float = DEFAULT_HORIZON_S  # forecast this far ahead (about a model's load time)

    def __post_init__(self) -> None:
        check_settings(self)


def check_settings(s: ForecastSettings, where: str = "") -> None:
    """One ConfigError naming the first setting out of range and its valid range."""
    checks = (("forecast_alpha", s.alpha, 0.0, 1.0, False, "e.g. 0.5"),
              ("forecast_beta", s.beta, 0.0, 1.0, True, "0 disables the trend; e.g. 0.3"),
              ("forecast_bucket_s", s.bucket_s, 0.0, MAX_BUCKET_S, False, "e.g. 1"),
              ("forecast_horizon_s", s.horizon_s, 0.0, MAX_HORIZON_S, False, "about a model's load time, e.g. 5"))
    for name, value, low, high, low_ok, hint in checks:
        ok = isinstance(value, int | float) and math.isfinite(value) and value <= high and (
            value >= low if low_ok else value > low)
        if not ok:
            bound = "<=" if low_ok else "<"
            raise ConfigError(f"{where}{name} {value!r} is out of range: use {low:g} {bound} {name} <= {high:g} "
                              f"({hint})")


@dataclass(slots=True)
class _Series:
    level: float = 0.0
    trend: float = 0.0
    count: int = 0  # arrivals in the open bucket
    started: bool = False  # has one closed bucket set the level
    idle: int = 0  # closed buckets in a row with no arrival


class Forecaster:
    """Holt forecasts of every model's arrival rate; `observe` arrivals, `rate` ahead."""

    def __init__(self, settings: ForecastSettings | None = None, now: float = 0.0) -> None:
        self.settings = settings or ForecastSettings()
        self._series: dict[str, _Series] = {}
        self._bucket_end = now + self.settings.bucket_s

    def observe(self, model: str, now: float, n: int = 1) -> None:
        """`n` requests for `model` arrived at `now`."""
        self.advance(now)
        self._series.setdefault(model, _Series()).count += n

    def advance(self, now: float) -> None:
        """Close every bucket that ended by `now` (a gap of several buckets observes zeros)."""
        width = self.settings.bucket_s
        closed = 0
        while now >= self._bucket_end:
            self._close(width)
            self._bucket_end += width
            closed += 1
            if closed > FORGET_BUCKETS:  # a long silence: the rest of the zeros change nothing useful
                self._bucket_end = now + width
                break

    def rate(self, model: str, now: float, horizon_s: float | None = None) -> float:
        """Predicted requests per second for `model`, `horizon_s` (default: the setting) from now."""
        self.advance(now)
        series = self._series.get(model)
        if series is None or not series.started:
            return 0.0
        h = self.settings.horizon_s if horizon_s is None else horizon_s
        return max(0.0, series.level + (h / self.settings.bucket_s) * series.trend)

    def rates(self, now: float, horizon_s: float | None = None) -> dict[str, float]:
        """Every known model's forecast."""
        self.advance(now)
        return {model: self.rate(model, now, horizon_s) for model in self._series}

    def expected(self, model: str, now: float) -> float:
        """The model's expected use for eviction: the larger of its smoothed rate now (the level)
        and its forecast. A falling trend may forecast 0 for a model in full use a moment after
        a burst; that must not make it the first to go."""
        self.advance(now)
        series = self._series.get(model)
        if series is None or not series.started:
            return 0.0
        return max(series.level, self.rate(model, now))

    def uses(self, now: float) -> dict[str, float]:
        """Every known model's expected use (`expected`)."""
        self.advance(now)
        return {model: self.expected(model, now) for model in self._series}

    def _close(self, width: float) -> None:
        a, b = self.settings.alpha, self.settings.beta
        for model in list(self._series):
            s = self._series[model]
            x = s.count / width
            if not s.started:
                s.level, s.trend, s.started = x, 0.0, True
            else:
                previous = s.level
                s.level = a * x + (1 - a) * (s.level + s.trend)
                s.trend = b * (s.level - previous) + (1 - b) * s.trend
            s.idle = s.idle + 1 if s.count == 0 else 0
            s.count = 0
            if s.idle > FORGET_BUCKETS and s.level < 1e-6:
                del self._series[model]


__all__ = ["ForecastSettings", "Forecaster", "check_settings"]
