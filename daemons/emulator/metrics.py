"""Prometheus text for `/metrics`, named exactly as TGI names things (REFERENCE §1.6).

- Counters carry no `_total` suffix (`tgi_request_count`, as TGI's Grafana queries use).
- Gauges: `tgi_queue_size`, `tgi_batch_current_size`, `tgi_batch_current_max_tokens`,
  `tgi_batch_max_total_tokens` (current/max tokens is the KV-usage proxy).
- `schedctl_emulator_busy_ratio` (ours, not TGI's): the fraction of the last second the
  engine spent in steps, 0..1. It stands in for NVML's utilization.gpu ("percent of time
  over the past sample period during which one or more kernels was executing"), which an
  emulated GPU cannot give; the node agent scrapes it beside the queue size.
- Every `*_duration` histogram has TGI's 35 bounds 1e-4·1.5^k s, k = 1..35; length
  histograms use max_input_tokens/100 or max_total_tokens/100 steps; `tgi_batch_next_size`
  uses powers of two (TGI has one bucket per size up to 1024, which bloats every scrape).
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Iterable, Sequence

DURATION_BUCKETS: tuple[float, ...] = tuple(1e-4 * 1.5**k for k in range(1, 36))
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(11))
FAILURE_REASONS = ("overloaded", "validation", "generation", "incomplete", "dropped", "template")


def linear_buckets(maximum: int) -> tuple[float, ...]:
    """TGI's length buckets: maximum/100 × (1..100)."""
    step = max(maximum, 1) / 100.0
    return tuple(step * k for k in range(1, 101))


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class Histogram:
    """One Prometheus histogram series (fixed bounds, no labels of its own)."""

    __slots__ = ("_bounds", "_counts", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self.count += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> Iterable[str]:
        sep = "," if labels else ""
        running = 0
        for bound, n in zip(self._bounds, self._counts, strict=False):
            running += n
            yield f'{name}_bucket{{{labels}{sep}le="{_fmt(bound)}"}} {running}'
        yield f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}'
        suffix = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{suffix} {_fmt(self.sum)}"
        yield f"{name}_count{suffix} {self.count}"


class BusyWindow:
    """Busy time over a sliding window: the engine reports each step as (start, end)."""

    __slots__ = ("_steps", "window_s")

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._steps: deque[tuple[float, float]] = deque()

    def step(self, start: float, end: float) -> None:
        self._steps.append((start, end))
        self._forget(end)

    def ratio(self, now: float | None = None) -> float:
        """Fraction of (now - window_s, now] covered by steps (a running step counts once it ends)."""
        now = time.monotonic() if now is None else now
        self._forget(now)
        since = now - self.window_s
        busy = sum(min(end, now) - max(start, since) for start, end in self._steps if end > since)
        return min(1.0, max(0.0, busy / self.window_s))

    def _forget(self, now: float) -> None:
        while self._steps and self._steps[0][1] <= now - self.window_s:
            self._steps.popleft()


class Metrics:
    """Every series the emulator exports; the engine and the routes update it."""

    def __init__(self, max_input_tokens: int, max_total_tokens: int, max_batch_total_tokens: int) -> None:
        self.queue_size = 0
        self.batch_current_size = 0
        self.batch_current_max_tokens = 0
        self.batch_max_total_tokens = max_batch_total_tokens
        self.request_count = 0
        self.request_success = 0
        self.request_failure = dict.fromkeys(FAILURE_REASONS, 0)
        self.batch_inference_count = {"prefill": 0, "decode": 0}
        self.batch_inference_success = {"prefill": 0, "decode": 0}
        self.durations = {
            name: Histogram(DURATION_BUCKETS)
            for name in ("duration", "validation_duration", "queue_duration", "inference_duration",
                         "mean_time_per_token_duration")
        }
        self.input_length = Histogram(linear_buckets(max_input_tokens))
        self.generated_tokens = Histogram(linear_buckets(max_total_tokens))
        self.max_new_tokens = Histogram(linear_buckets(max_total_tokens))
        self.batch_next_size = Histogram(BATCH_SIZE_BUCKETS)
        self.batch_forward_duration = {m: Histogram(DURATION_BUCKETS) for m in ("prefill", "decode")}
        self.busy = BusyWindow()

    def fail(self, reason: str) -> None:
        self.request_failure[reason] = self.request_failure.get(reason, 0) + 1

    def render(self) -> str:
        lines: list[str] = []
        for name, value in (
            ("tgi_queue_size", self.queue_size),
            ("tgi_batch_current_size", self.batch_current_size),
            ("tgi_batch_current_max_tokens", self.batch_current_max_tokens),
            ("tgi_batch_max_total_tokens", self.batch_max_total_tokens),
        ):
            lines += [f"# TYPE {name} gauge", f"{name} {value}"]
        lines += ["# TYPE schedctl_emulator_busy_ratio gauge", f"schedctl_emulator_busy_ratio {self.busy.ratio():.4f}"]
        lines += ["# TYPE tgi_request_count counter", f"tgi_request_count {self.request_count}"]
        lines += ["# TYPE tgi_request_success counter", f"tgi_request_success {self.request_success}"]
        lines.append("# TYPE tgi_request_failure counter")
        lines += [f'tgi_request_failure{{err="{k}"}} {v}' for k, v in self.request_failure.items()]
        for name, series in (("tgi_batch_inference_count", self.batch_inference_count),
                             ("tgi_batch_inference_success", self.batch_inference_success)):
            lines.append(f"# TYPE {name} counter")
            lines += [f'{name}{{method="{m}"}} {v}' for m, v in series.items()]
        for short, hist in self.durations.items():
            self._histogram(lines, f"tgi_request_{short}", hist)
        self._histogram(lines, "tgi_request_input_length", self.input_length)
        self._histogram(lines, "tgi_request_generated_tokens", self.generated_tokens)
        self._histogram(lines, "tgi_request_max_new_tokens", self.max_new_tokens)
        self._histogram(lines, "tgi_batch_next_size", self.batch_next_size)
        lines.append("# TYPE tgi_batch_forward_duration histogram")
        for method, hist in self.batch_forward_duration.items():
            lines += hist.lines("tgi_batch_forward_duration", f'method="{method}"')
        return "\n".join(lines) + "\n"

    @staticmethod
    def _histogram(lines: list[str], name: str, hist: Histogram) -> None:
        lines.append(f"# TYPE {name} histogram")
        lines += hist.lines(name)
