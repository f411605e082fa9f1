"""One emulated TGI instance: what every route shares (engine, metrics, readiness, /info).

`Deployment` is the fully resolved configuration (profiles loaded, limits computed);
`Service` owns the engine and the metrics and turns an HTTP request into engine work
in TGI's order: count → permit (`overloaded`) → validate (`validation`) → queue.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from dataclasses import dataclass
from typing import Any

from daemons.emulator.engine import (
    Engine,
    EngineLimits,
    Generation,
    Group,
    Overloaded,
    Permit,
    RequestTimes,
    pick_best,
)
from daemons.emulator.metrics import Metrics, head
from daemons.emulator.validation import GenerateParams, Limits, ValidationFailed, ValidRequest, validate
from daemons.profiles import GpuProfile, LatencyCoefficients, ModelProfile

#: The TGI release whose protocol the emulator speaks (TGI docs/openapi.json, info.version).
TGI_VERSION = "3.3.6-dev0"
SYSTEM_FINGERPRINT = f"{TGI_VERSION}-native"


@dataclass(frozen=True, slots=True)
class Deployment:
    """Everything an instance needs, resolved: built by `server.resolve(config)`."""

    model_id: str
    model: ModelProfile
    gpu: GpuProfile
    coefficients: LatencyCoefficients
    limits: Limits
    engine_limits: EngineLimits
    load_seconds: float
    seed: int = 0
    eos_rate: float = 0.0
    max_client_batch_size: int = 4
    validation_workers: int = 2
    compute_type: str = "gpu+optimized"
    payload_limit: int = 2_000_000  # TGI's --payload-limit default, bytes


class Service:
    """The engine, its metrics and its readiness clock, behind every route."""

    def __init__(self, deployment: Deployment) -> None:
        d = deployment
        self.deployment = d
        self.metrics = Metrics(d.limits.max_input_tokens, d.limits.max_total_tokens,
                               d.engine_limits.max_batch_total_tokens)
        self.engine = Engine(d.coefficients, d.engine_limits, self.metrics, seed=d.seed, eos_rate=d.eos_rate)
        self.rng = random.Random(d.seed)
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start_engine(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.engine.run(), name="emulator-engine")

    async def stop_engine(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    @property
    def ready(self) -> bool:
        """True once the modelled load time (checkpoint copy + init) has passed."""
        return time.monotonic() - self.started >= self.deployment.load_seconds

    # -- requests ----------------------------------------------------------------------

    def start(self, inputs: str, params: GenerateParams, times: RequestTimes, *, streaming: bool) -> Generation:
        """Permit, validate and queue one request (raises Overloaded or ValidationFailed)."""
        return self.start_many(inputs, params, times, n=1, streaming=streaming)[0]

    def start_many(
        self, inputs: str, params: GenerateParams, times: RequestTimes, *, n: int, streaming: bool
    ) -> list[Generation]:
        """`n` generations of one prompt (best_of): one permit each, distinct seeds when n > 1."""
        self.metrics.request_count += 1
        permits = self._acquire(n)
        try:
            valid = validate(inputs, params, self.deployment.limits, self.rng)
        except ValidationFailed:
            for p in permits:
                p.release()
            self.metrics.fail("validation")
            raise
        group = Group()
        return [self.engine.submit(self._variant(valid, i), times, p, streaming=streaming, group=group)
                for i, p in enumerate(permits)]

    def _acquire(self, n: int) -> list[Permit]:
        permits: list[Permit] = []
        try:
            for _ in range(n):
                permits.append(self.engine.acquire())
        except Overloaded:
            for p in permits:
                p.release()
            self.metrics.fail("overloaded")
            raise
        return permits

    def _variant(self, valid: ValidRequest, i: int) -> ValidRequest:
        return valid if i == 0 else dataclasses.replace(valid, seed=self.rng.getrandbits(63))

    def count_failure(self, reason: str) -> None:
        """A request refused before reaching `start` (e.g. stream-only validation rules)."""
        self.metrics.request_count += 1
        self.metrics.fail(reason)

    # -- introspection -----------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        d = self.deployment
        return {
            "model_id": d.model_id,
            "model_sha": None,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": d.engine_limits.max_concurrent_requests,
            "max_best_of": d.limits.max_best_of,
            "max_stop_sequences": d.limits.max_stop_sequences,
            "max_input_tokens": d.limits.max_input_tokens,
            "max_total_tokens": d.limits.max_total_tokens,
            "validation_workers": d.validation_workers,
            "max_client_batch_size": d.max_client_batch_size,
            "router": "text-generation-router",
            "version": TGI_VERSION,
            "sha": None,
            "docker_label": None,
        }

    def render_metrics(self) -> str:
        """TGI's series, then the emulator's own (not TGI series): step lag and busy ratio.

        `schedctl_emulator_busy_ratio` is the fraction of the last second the engine spent
        in steps; a node reads it as the compute utilisation of the emulated GPU."""
        extra = [*head("schedctl_emulator_step_lag_seconds", "histogram",
                       "How late the engine started its steps, in seconds."),
                 *self.engine.step_lag.lines("schedctl_emulator_step_lag_seconds"),
                 *head("schedctl_emulator_busy_ratio", "gauge",
                       "Fraction of the last second of wall time the engine spent in steps (0..1)."),
                 f"schedctl_emulator_busy_ratio {self.engine.busy_ratio():.4f}"]
        return self.metrics.render() + "\n".join(extra) + "\n"


def best_of(generations: list[Generation]) -> tuple[Generation, list[Generation]]:
    """TGI's best_of pick (`engine.pick_best`); the rest become best_of_sequences."""
    best = pick_best(generations)
    return best, [g for g in generations if g is not best]
