"""Prometheus text for `/metrics`, named exactly as TGI names things (TGI docs/source/reference/metrics.md).

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
- Every series has `# HELP` and `# TYPE` lines, and every series TGI's own Grafana
  dashboard queries (TGI `assets/tgi_grafana.json`) is exported, including those the
  emulator has no work for: `tgi_batch_{decode,filter,concat}_duration` (detokenizing,
  filtering and concatenating batches cost the emulator nothing: observed as 0) and
  `tgi_request_skipped_tokens` (no speculative decoding: always 0).
- A request counts once in every request series, however many sequences `best_of`
  made: the engine records the best one when the last of them finishes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

DURATION_BUCKETS: tuple[float, ...] = tuple(1e-4 * 1.5**k for k in range(1, 36))
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(2**k) for k in range(11))
FAILURE_REASONS = ("overloaded", "validation", "generation", "incomplete", "dropped", "template")
SKIPPED_TOKEN_BUCKETS: tuple[float, ...] = tuple(float(k) for k in range(11))
METHODS = ("prefill", "decode")
CONCAT_REASONS = ("backpressure", "chunking", "wait_exceeded")

HELP = {
    "tgi_queue_size": "Requests waiting in the queue.",
    "tgi_batch_current_size": "Requests in the running batch.",
    "tgi_batch_current_max_tokens": "KV-cache token slots held by the running batch.",
    "tgi_batch_max_total_tokens": "KV-cache budget in tokens (max_batch_total_tokens).",
    "tgi_request_count": "Requests received.",
    "tgi_request_success": "Requests that finished generating.",
    "tgi_request_failure": "Requests that failed, by error type.",
    "tgi_batch_inference_count": "Forward passes started, by method.",
    "tgi_batch_inference_success": "Forward passes that succeeded, by method.",
    "tgi_batch_inference_failure": "Forward passes that failed, by method.",
    "tgi_batch_concat": "Times new requests joined a running batch, by reason.",
    "tgi_request_duration": "End-to-end request latency in seconds.",
    "tgi_request_validation_duration": "Request validation time in seconds.",
    "tgi_request_queue_duration": "Time a request waited in the queue in seconds.",
    "tgi_request_inference_duration": "Time from batch entry to the last token in seconds.",
    "tgi_request_mean_time_per_token_duration": "Mean time per generated token in seconds.",
    "tgi_request_input_length": "Prompt length in tokens.",
    "tgi_request_generated_tokens": "Generated tokens per request.",
    "tgi_request_max_new_tokens": "max_new_tokens per request.",
    "tgi_request_skipped_tokens": "Speculated tokens accepted per request (the emulator does not speculate).",
    "tgi_batch_next_size": "Requests admitted into the batch per prefill.",
    "tgi_batch_inference_duration": "Duration of one batch step in seconds, by method.",
    "tgi_batch_forward_duration": "Model forward time of one batch step in seconds, by method.",
    "tgi_batch_decode_duration": "Detokenization time of one batch step in seconds, by method.",
    "tgi_batch_filter_duration": "Batch filtering time in seconds, by method.",
    "tgi_batch_concat_duration": "Batch concatenation time in seconds, by method.",
}


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
        self.skipped_tokens = Histogram(SKIPPED_TOKEN_BUCKETS)
        self.batch_next_size = Histogram(BATCH_SIZE_BUCKETS)
        self.batch_inference_failure = dict.fromkeys(METHODS, 0)
        self.batch_concat = dict.fromkeys(CONCAT_REASONS, 0)
        self.batch_durations = {
            name: {m: Histogram(DURATION_BUCKETS) for m in METHODS}
            for name in ("inference", "forward", "decode", "filter", "concat")
        }

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
            lines += [*_head(name, "gauge"), f"{name} {value}"]
        lines += [*_head("tgi_request_count", "counter"), f"tgi_request_count {self.request_count}"]
        lines += [*_head("tgi_request_success", "counter"), f"tgi_request_success {self.request_success}"]
        _labelled(lines, "tgi_request_failure", "err", self.request_failure)
        _labelled(lines, "tgi_batch_inference_count", "method", self.batch_inference_count)
        _labelled(lines, "tgi_batch_inference_success", "method", self.batch_inference_success)
        _labelled(lines, "tgi_batch_inference_failure", "method", self.batch_inference_failure)
        _labelled(lines, "tgi_batch_concat", "reason", self.batch_concat)
        for short, hist in self.durations.items():
            self._histogram(lines, f"tgi_request_{short}", hist)
        self._histogram(lines, "tgi_request_input_length", self.input_length)
        self._histogram(lines, "tgi_request_generated_tokens", self.generated_tokens)
        self._histogram(lines, "tgi_request_max_new_tokens", self.max_new_tokens)
        self._histogram(lines, "tgi_request_skipped_tokens", self.skipped_tokens)
        self._histogram(lines, "tgi_batch_next_size", self.batch_next_size)
        for short, by_method in self.batch_durations.items():
            name = f"tgi_batch_{short}_duration"
            lines += _head(name, "histogram")
            for method, hist in by_method.items():
                lines += hist.lines(name, f'method="{method}"')
        return "\n".join(lines) + "\n"

    @staticmethod
    def _histogram(lines: list[str], name: str, hist: Histogram) -> None:
        lines += _head(name, "histogram")
        lines += hist.lines(name)


def _head(name: str, kind: str, help_text: str | None = None) -> list[str]:
    """The `# HELP` and `# TYPE` lines of one metric family."""
    return [f"# HELP {name} {help_text or HELP[name]}", f"# TYPE {name} {kind}"]


def _labelled(lines: list[str], name: str, label: str, series: dict[str, int]) -> None:
    lines += _head(name, "counter")
    lines += [f'{name}{{{label}="{k}"}} {v}' for k, v in series.items()]


def head(name: str, kind: str, help_text: str) -> list[str]:
    """`# HELP`/`# TYPE` lines for a series that is not TGI's (the emulator's own)."""
    return _head(name, kind, help_text)
