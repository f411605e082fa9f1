"""Backend instances on this node: launch, wait for /health, evict (LRU), notice deaths.

One instance serves one model. Memory is booked in a ledger the moment a load starts,
so two concurrent loads can never both "fit" into the same free gigabytes. When a load
does not fit, idle instances (no request running) are stopped, least recently used
first; a busy instance is never evicted under a running request: when every loaded
model is busy, the load waits until one goes idle (or leaves) instead of refusing, so a
placement made on a slightly stale view (the scheduler saw an idle model that has just
taken a request) is served late rather than failed. The request's own timeout bounds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemons.node.backend import Backend, BackendRequestError, httpx
from daemons.node.catalog import Catalog
from daemons.node.config import NodeConfig

log = logging.getLogger("schedctl.node.instances")
STOP_GRACE_S = 5.0


@dataclass(eq=False)
class Instance:
    model: str
    port: int
    footprint: int
    backend: Backend
    state: str = "loading"  # loading | ready | failed | evicting
    running: int = 0
    last_used: float = field(default_factory=time.monotonic)
    queue_size: int = 0
    batch_size: int = 0
    busy_ratio: float = 0.0  # share of the last second in engine steps (emulator only)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str = ""
    proc: asyncio.subprocess.Process | None = None
    streams: set[asyncio.Task[Any]] = field(default_factory=set)


class ModelManager:
    """Owns the instances of one node and its GPU memory ledger."""

    def __init__(self, config: NodeConfig, catalog: Catalog, memory_total: Callable[[], int],
                 on_change: Callable[[], None]) -> None:
        self.config, self.catalog = config, catalog
        self._memory_total = memory_total
        self._on_change = on_change
        self.instances: dict[str, Instance] = {}
        self._probe = httpx.AsyncClient(timeout=2.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()  # set whenever an instance may have become evictable or left

    def ledger_used(self) -> int:
        return sum(i.footprint for i in self.instances.values())

    async def acquire(self, model: str) -> tuple[Instance, bool]:
        """A ready instance of `model` with one more running request; True if we loaded it."""
        if model not in self.catalog.models:
            raise BackendRequestError("unknown_model", f"model {model!r} is not in this node's catalog "
                                      f"({', '.join(self.catalog.models)})")
        instance = self.instances.get(model)
        while instance is not None and instance.state == "evicting":
            # On its way out to make room for another model: load it afresh once it has left.
            self._freed.clear()
            await self._freed.wait()
            instance = self.instances.get(model)
        cold = instance is None
        if instance is None:
            instance = await self._start(model)
        instance.running += 1  # counted before waiting, so eviction skips it
        instance.last_used = time.monotonic()
        try:
            await self._wait_ready(instance)
        except BaseException:
            instance.running -= 1
            raise
        return instance, cold

    def ready(self, model: str) -> bool:
        """An instance of `model` is loaded and ready now (a request would not wait)."""
        instance = self.instances.get(model)
        return instance is not None and instance.state == "ready"

    def busy_ratio(self) -> float:
        """The ready instances' busy ratios summed, capped at 1 (see daemons/node/gpu.py)."""
        return min(1.0, sum(i.busy_ratio for i in self.instances.values() if i.state == "ready"))

    def can_host(self, model: str) -> bool:
        """The model is here already, or fits once idle instances are evicted."""
        if model not in self.catalog.models:
            return False
        if model in self.instances:
            return self.instances[model].state in ("loading", "ready")
        idle = sum(i.footprint for i in self.instances.values() if i.running == 0 and i.state == "ready")
        return self.catalog.footprint(model) <= self._memory_total() - self.ledger_used() + idle

    def release(self, instance: Instance) -> None:
        instance.running -= 1
        instance.last_used = time.monotonic()
        self._freed.set()
        self._on_change()

    async def _wait_ready(self, instance: Instance) -> None:
        await instance.ready.wait()
        if instance.state != "ready":
            raise BackendRequestError("load_failed", instance.failure or f"{instance.model} failed to load")

    async def _start(self, model: str) -> Instance:
        footprint = self.catalog.footprint(model)
        await self._make_room(model, footprint)
        existing = self.instances.get(model)
        if existing is not None:  # another request started it while we waited for room
            return existing
        port = _free_port()
        instance = Instance(model, port, footprint, Backend(f"http://127.0.0.1:{port}", self._probe))
        self.instances[model] = instance
        self._on_change()
        self._spawn(self._load(instance))
        return instance

    async def _make_room(self, model: str, need: int) -> None:
        total = self._memory_total()
        if need > total:
            raise BackendRequestError("no_capacity", f"{model} needs {need / 2**30:.1f} GiB but the GPU "
                                      f"has only {total / 2**30:.1f} GiB")
        waiting = False
        while total - self.ledger_used() < need:
            if model in self.instances:
                return  # started by another request while we waited
            victim = self._lru_idle()
            if victim is None:
                # Every loaded model is busy: wait for one to go idle or leave.
                if not waiting:
                    log.info("%s waits for memory: %.1f GiB needed, every loaded model is busy", model,
                             need / 2**30, extra={"SCHEDCTL_MODEL": model})
                waiting = True
                self._freed.clear()
                await self._freed.wait()
                continue
            log.info("evicting %s (idle, least recently used) to load %s", victim.model, model,
                     extra={"SCHEDCTL_MODEL": victim.model, "SCHEDCTL_ACTION": "EVICT"})
            await self.stop(victim)

    def _lru_idle(self) -> Instance | None:
        idle = [i for i in self.instances.values() if i.running == 0 and i.state == "ready"]
        return min(idle, key=lambda i: i.last_used, default=None)

    async def _load(self, instance: Instance) -> None:
        started = time.monotonic()
        try:
            instance.proc = await self._launch(instance)
            self._spawn(self._watch(instance, instance.proc))
            await asyncio.wait_for(self._until_healthy(instance), self.config.load_timeout_s)
        except (OSError, TimeoutError, BackendRequestError) as exc:
            await self._fail(instance, f"loading {instance.model} failed: {exc or type(exc).__name__}")
            return
        instance.state = "ready"
        instance.ready.set()
        log.info("loaded %s on port %d in %.2f s", instance.model, instance.port, time.monotonic() - started,
                 extra={"SCHEDCTL_MODEL": instance.model})
        self._on_change()

    async def _launch(self, instance: Instance) -> asyncio.subprocess.Process:
        argv = self._argv(instance)
        log.info("launching %s: %s", instance.model, " ".join(argv))
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent)

    def _argv(self, instance: Instance) -> list[str]:
        values = {"model": instance.model, "port": str(instance.port), "gpu": self.config.gpu,
                  "tier": self.config.checkpoint_tier, "kv_tokens": str(self.config.kv_tokens),
                  "init_s": str(self.config.init_s), "master_port": str(instance.port + 20000),
                  "schedctl": schedctl_command()}
        return [arg.format(**values) for arg in self.config.launcher]

    async def _until_healthy(self, instance: Instance) -> None:
        while not await instance.backend.healthy():
            if instance.state == "failed":
                raise BackendRequestError("load_failed", instance.failure)
            await asyncio.sleep(0.05)

    async def _watch(self, instance: Instance, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if instance.state != "evicting":
            await self._fail(instance, f"instance of {instance.model} (pid {proc.pid}) exited with "
                             f"{_describe_exit(code)}")

    async def _fail(self, instance: Instance, why: str) -> None:
        """Mark the instance dead, fail its streams at once, and free its memory."""
        log.error(why, extra={"SCHEDCTL_MODEL": instance.model})
        instance.state, instance.failure = "failed", why
        instance.ready.set()
        for task in list(instance.streams):
            task.cancel(why)
        if self.instances.get(instance.model) is instance:
            del self.instances[instance.model]
        await _terminate(instance.proc)
        self._freed.set()
        self._on_change()

    async def stop(self, instance: Instance) -> None:
        instance.state = "evicting"
        self._on_change()
        await _terminate(instance.proc)
        await instance.backend.close()
        if self.instances.get(instance.model) is instance:
            del self.instances[instance.model]
        self._freed.set()
        self._on_change()

    async def refresh_load(self) -> None:
        """Read queue and batch size from every ready instance's /metrics."""
        ready = [i for i in self.instances.values() if i.state == "ready"]
        loads = await asyncio.gather(*(i.backend.load() for i in ready))
        for instance, load in zip(ready, loads, strict=True):
            if load is not None:
                instance.queue_size, instance.batch_size = load.queue_size, load.batch_size
                instance.busy_ratio = load.busy_ratio

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(i) for i in list(self.instances.values())))
        for task in list(self._tasks):
            task.cancel()
        await self._probe.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _terminate(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _describe_exit(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def schedctl_command() -> str:
    """The `schedctl` console script of this installation (the venv we run from)."""
    beside = Path(sys.executable).parent / "schedctl"
    return str(beside) if beside.exists() else (shutil.which("schedctl") or "schedctl")


def _die_with_parent() -> None:
    # An instance must not outlive its node: if the node is killed (even with SIGKILL),
    # the kernel sends SIGTERM to the instance (PR_SET_PDEATHSIG = 1).
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
