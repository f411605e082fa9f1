"""`backend = "emulator-inproc"`: the node serves its emulated instances inside its own process.

Each instance is the emulator's `Service` (daemons/emulator/instance.py: the continuous-
batching engine, its metrics and its readiness clock), resolved from the same launcher flags
the node would pass to `schedctl start emulator` (daemons/node/config.py EMULATOR_LAUNCHER)
and driven directly on the node's event loop: no process, no port, no HTTP. So batching,
load time, KV budget, eviction and per-token latency are the HTTP emulator's own. What
differs: no process start before the load clock runs, no request or SSE encoding, and the
engine's steps share the node's event loop (a node too busy to keep time delays its steps,
where an emulator process would have its own loop). The HTTP emulator stays the default and
the fidelity path (a drop-in for TGI); this backend is for many nodes on one machine
(scripts/bench_scale.py).

The engine task plays the instance's process: it starts when the instance is launched, and
if it ends while the instance is not being evicted, the instance fails (its streams fail at
once, its memory is freed), as a dead emulator process would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from daemons.core.errors import ConfigError
from daemons.emulator.config import EmulatorConfig, resolve
from daemons.emulator.engine import Generation, Overloaded, RequestTimes, StreamToken
from daemons.emulator.instance import Deployment, Service
from daemons.emulator.tokens import Token as EngineToken
from daemons.emulator.validation import GenerateParams, ValidationFailed
from daemons.node.backend_api import BackendRequestError, Finished, Load, Token
from daemons.node.instances import HEALTH_POLL_S, Instance, ModelManager

log = logging.getLogger("schedctl.node.inproc")

#: Put into the queue of every open stream when the engine stops under it.
_STOPPED = StreamToken(-1, EngineToken(-1, "", 0.0), [], "engine_stopped")


class InprocBackend:
    """One emulated instance as an object of the node's process (`InstanceBackend`)."""

    def __init__(self, deployment: Deployment) -> None:
        self.service = Service(deployment)  # its load clock starts now, as an emulator's at start-up
        self.open_streams = 0
        self._open: set[Generation] = set()
        self._engine: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._engine = asyncio.get_running_loop().create_task(self.service.engine.run(),
                                                              name=f"engine-{self.service.deployment.model_id}")

    async def stopped(self) -> str:
        """Wait until the engine task ends; why it ended."""
        if self._engine is None:
            return "never started"
        try:
            await asyncio.shield(self._engine)
        except asyncio.CancelledError:
            if not self._engine.cancelled():
                raise  # our waiter was cancelled, not the engine
            return "stopped"
        except Exception as exc:  # the engine crashed: the instance is dead
            return f"{type(exc).__name__}: {exc}"
        return "returned"

    async def stream(self, prompt: str, max_new_tokens: int) -> AsyncIterator[Token | Finished]:
        """What `Backend.stream` yields for the same request over HTTP (TGI's `/` with
        stream and details): every token with its 1-based index, then one Finished."""
        if self._engine is None or self._engine.done() or not self.service.ready:
            raise BackendRequestError("backend_unreachable", "the in-process instance is not serving")
        params = GenerateParams(details=True, max_new_tokens=max_new_tokens)
        try:
            gen = self.service.start(prompt, params, RequestTimes(start=time.monotonic()), streaming=True)
        except (Overloaded, ValidationFailed) as exc:
            raise BackendRequestError(exc.error_type, exc.message) from None
        self.open_streams += 1
        self._open.add(gen)
        try:
            while True:
                st = await gen.queue.get()
                if st is _STOPPED:
                    raise BackendRequestError("backend_died", "the in-process engine stopped")
                yield Token(st.token.text, st.index)
                if st.finish_reason is not None:
                    finished = Finished(len(gen.generated), st.finish_reason)
                    break
        finally:
            gen.cancel()  # a stream closed early: the engine drops the request at its next step
            self._open.discard(gen)
            self.open_streams -= 1
        yield finished

    async def healthy(self) -> bool:
        return self.service.ready and self._engine is not None and not self._engine.done()

    async def load(self) -> Load | None:
        metrics = self.service.metrics
        return Load(metrics.queue_size, metrics.batch_current_size, round(self.service.engine.busy_ratio(), 4))

    async def close(self) -> None:
        """Stop the engine; streams still open end with `backend_died`."""
        if self._engine is not None:
            self._engine.cancel()
            await asyncio.gather(self._engine, return_exceptions=True)
        for gen in self._open:
            gen.queue.put_nowait(_STOPPED)


class InprocModelManager(ModelManager):
    """`ModelManager` whose instances are `InprocBackend`s: loading starts an engine and waits
    out its modelled load time; stopping cancels it. Ledger, LRU eviction and the waits for
    memory are the base class's."""

    def _new_instance(self, model: str, footprint: int) -> Instance:
        return Instance(model, 0, footprint, InprocBackend(self._deployment(model)))

    def _deployment(self, model: str) -> Deployment:
        """What `schedctl start emulator` would resolve from the flags this node passes it."""
        config = self.config
        try:
            return resolve(EmulatorConfig(model_id=model, port=0, gpu=config.gpu,
                                          checkpoint_tier=config.checkpoint_tier,
                                          max_batch_total_tokens=config.kv_tokens, init_seconds=config.init_s))
        except ConfigError as exc:  # what the emulator process would exit with
            raise BackendRequestError("load_failed", f"the emulator refuses {model}: {exc}") from None

    async def _launch_until_ready(self, instance: Instance) -> None:
        backend = _inproc(instance)
        log.info("starting %s in-process (ready in %.2f s)", instance.model,
                 backend.service.deployment.load_seconds, extra={"SCHEDCTL_MODEL": instance.model})
        backend.start()
        while not await backend.healthy():
            if backend.service.ready:  # ready yet not healthy: the engine is gone
                raise BackendRequestError("load_failed", f"the engine of {instance.model} ended while loading")
            await asyncio.sleep(min(HEALTH_POLL_S, max(self._until_ready(backend), 0.0)))

    @staticmethod
    def _until_ready(backend: InprocBackend) -> float:
        service = backend.service
        return service.started + service.deployment.load_seconds - time.monotonic()

    async def _watch(self, instance: Instance, proc: asyncio.subprocess.Process | None) -> None:
        why = await _inproc(instance).stopped()
        if instance.state != "evicting" and self.instances.get(instance.model) is instance:
            await self._fail(instance, f"the in-process engine of {instance.model} ended ({why})")


def _inproc(instance: Instance) -> InprocBackend:
    backend = instance.backend
    assert isinstance(backend, InprocBackend)
    return backend
