"""Backend instances on this node: launch, wait for /health, evict (LRU), notice deaths.

One instance serves one model. Memory is booked in a ledger the moment a load starts,
so two concurrent loads can never both "fit" into the same free gigabytes. When a load
does not fit, idle instances (no request running) are stopped, least recently used
first; a busy instance is never evicted under a running request: when every loaded
model is busy, the load waits until one goes idle (or leaves) instead of refusing, so a
placement made on a slightly stale view (the scheduler saw an idle model that has just
taken a request) is served late rather than failed. The request's own timeout bounds it.

Instances are the node's own children (`backend = "emulator"`: `schedctl start
emulator`; `backend = "tgi"`: `text-generation-launcher`, TGI's or the emulator's
`schedctl-tgi-launcher` installed under that name), supervised here: a death fails the
instance's streams at once and frees its memory. With `backend = "emulator-inproc"` an
instance is the emulator's engine inside this process instead (`make_manager` picks
daemons/node/inproc.py's manager): the same ledger, eviction and supervision, no port.

Ports: the node picks a free port and the launcher binds it later, so another process
can take it in between. That race is harmless: an instance counts as ready only when
`/health` answers 200 *and* the listening socket belongs to the launcher's process
tree; a launcher that dies while its port is held by someone else, or a port answered
by a foreign server, is retried on a new port (`PORT_ATTEMPTS` in all).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import math
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psutil

from daemons.core.errors import ConfigError
from daemons.core.process import describe_exit, free_port, schedctl_executable
from daemons.node.backend_api import BackendRequestError, InstanceBackend
from daemons.node.catalog import Catalog
from daemons.node.config import INPROC, NodeConfig
from daemons.node.eviction import fits_after_eviction, lru_idle

if TYPE_CHECKING:  # loaded when the first HTTP instance is made: an in-process node never needs it
    from daemons.node.backend import httpx

log = logging.getLogger("schedctl.node.instances")
STOP_GRACE_S = 5.0
#: Launches of one instance on fresh ports before a port race counts as a failure.
PORT_ATTEMPTS = 4
HEALTH_POLL_S = 0.05


class PortTaken(Exception):
    """The instance's port is held by a process outside its launcher's tree."""


@dataclass(eq=False)
class Instance:
    model: str
    port: int
    footprint: int
    backend: InstanceBackend
    state: str = "loading"  # loading | ready | failed | evicting
    running: int = 0
    last_used: float = field(default_factory=time.monotonic)
    queue_size: int = 0
    batch_size: int = 0
    busy_ratio: float | None = None  # emulated GPU compute utilisation (None: not an emulator)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str = ""
    proc: asyncio.subprocess.Process | None = None
    streams: set[asyncio.Task[Any]] = field(default_factory=set)


class LoadObserver(Protocol):
    """Told of loads and evictions as they happen (the node's metrics, daemons/node/metrics.py)."""

    def loaded(self, model: str, seconds: float) -> None: ...
    def load_failed(self, model: str) -> None: ...
    def evicted(self, model: str) -> None: ...


class ModelManager:
    """Owns the instances of one node and its GPU memory ledger."""

    def __init__(self, config: NodeConfig, catalog: Catalog, memory_total: Callable[[], int],
                 on_change: Callable[[], None]) -> None:
        self.config, self.catalog = config, catalog
        self._memory_total = memory_total
        self._on_change = on_change
        self.instances: dict[str, Instance] = {}
        self.template = config.launch_template
        check_launcher(config.backend, self.template)
        self._probe: httpx.AsyncClient | None = None  # health and /metrics of every HTTP instance
        self._tasks: set[asyncio.Task[None]] = set()
        self._freed = asyncio.Event()  # set whenever an instance may have become evictable or left
        self.port_retries = 0  # launches repeated because another process held the port
        self.observer: LoadObserver | None = None
        self.watcher: LoadObserver | None = None  # the node's learning (daemons/node/learning.py)
        # Eviction order of idle instances, lowest first (model, last_used): LRU unless the node
        # ranks by least expected use (pre-warming on, daemons/policy/prewarm.py).
        self.victim_key: Callable[[str, float], Any] = lambda model, last_used: last_used

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
        return min(1.0, sum(i.busy_ratio or 0.0 for i in self.instances.values() if i.state == "ready"))

    def can_host(self, model: str) -> bool:
        """The model is here already, or fits once idle instances are evicted."""
        if model not in self.catalog.models:
            return False
        if model in self.instances:
            return self.instances[model].state in ("loading", "ready")
        return fits_after_eviction(self.catalog.footprint(model), self._memory_total(), self.instances.values())

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
        instance = self._new_instance(model, footprint)
        self.instances[model] = instance
        self._on_change()
        self._spawn(self._load(instance))
        return instance

    def _new_instance(self, model: str, footprint: int) -> Instance:
        """An instance to be launched as a process serving HTTP on a port of its own."""
        port = free_port()
        return Instance(model, port, footprint, self._http_backend(port))

    def _http_backend(self, port: int) -> InstanceBackend:
        from daemons.node.backend import Backend, httpx

        if self._probe is None:
            self._probe = httpx.AsyncClient(timeout=2.0)
        return Backend(f"http://127.0.0.1:{port}", self._probe)

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
            log.info("evicting %s (idle, first in eviction order) to load %s", victim.model, model,
                     extra={"SCHEDCTL_MODEL": victim.model, "SCHEDCTL_ACTION": "EVICT"})
            await self.evict(victim)

    async def evict(self, victim: Instance) -> None:
        """Stop an idle instance to make room, telling the observers."""
        for observer in (self.observer, self.watcher):
            if observer is not None:
                observer.evicted(victim.model)
        await self.stop(victim)

    async def evict_idle(self, models: list[str]) -> None:
        """Evict those of `models` that are loaded and idle now (a pre-warm's named victims)."""
        for model in models:
            instance = self.instances.get(model)
            if instance is not None and instance.running == 0 and instance.state == "ready":
                await self.evict(instance)

    def _lru_idle(self) -> Instance | None:
        return lru_idle(self.instances.values(), key=lambda i: self.victim_key(i.model, i.last_used))

    async def _load(self, instance: Instance) -> None:
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._launch_until_ready(instance), self.config.load_timeout_s)
        except (OSError, TimeoutError, BackendRequestError) as exc:
            if self.observer is not None:
                self.observer.load_failed(instance.model)
            await self._fail(instance, f"loading {instance.model} failed: {exc or type(exc).__name__}")
            return
        instance.state = "ready"
        instance.ready.set()
        self._spawn(self._watch(instance, instance.proc))
        took = time.monotonic() - started
        where = f"on port {instance.port}" if instance.port else "in-process"
        log.info("loaded %s %s in %.2f s", instance.model, where, took, extra={"SCHEDCTL_MODEL": instance.model})
        for observer in (self.observer, self.watcher):
            if observer is not None:
                observer.loaded(instance.model, took)
        self._on_change()

    async def _launch_until_ready(self, instance: Instance) -> None:
        """Launch and wait for /health; on a lost port race, again on a new port."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            instance.proc = proc = await self._launch(instance)
            try:
                await self._until_healthy(instance, proc)
                return
            except PortTaken as exc:
                await _terminate(proc)
                if attempt == PORT_ATTEMPTS:
                    raise BackendRequestError("load_failed", f"{exc}; gave up after {attempt} ports") from None
                old = instance.port
                await self._move(instance, free_port())
                self.port_retries += 1
                log.warning("%s: %s; launching again on port %d", instance.model, exc, instance.port,
                            extra={"SCHEDCTL_MODEL": instance.model})
                log.debug("port %d given up for %s", old, instance.model)
            except BaseException:
                await _terminate(proc)
                raise

    async def _move(self, instance: Instance, port: int) -> None:
        await instance.backend.close()
        instance.port = port
        instance.backend = self._http_backend(port)

    async def _launch(self, instance: Instance) -> asyncio.subprocess.Process:
        argv = self._argv(instance)
        log.info("launching %s: %s", instance.model, " ".join(argv))
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, preexec_fn=_die_with_parent, env=self._env(),
            start_new_session=True)  # its own process group: stopping it stops TGI's shards and router too

    def _env(self) -> dict[str, str]:
        """The node's environment, plus what an emulator behind TGI's launcher reads in place of
        flags TGI does not have, so its GPU and load time are the ones the node's catalog predicts
        (real TGI ignores these variables)."""
        return {**os.environ, "SCHEDCTL_EMULATOR_GPU": self.config.gpu,
                "SCHEDCTL_EMULATOR_CHECKPOINT_TIER": self.config.checkpoint_tier,
                "SCHEDCTL_EMULATOR_INIT_SECONDS": str(self.config.init_s)}

    def _argv(self, instance: Instance) -> list[str]:
        total = max(self._memory_total(), 1)
        fraction = min(math.ceil(instance.footprint / total * 1e4) / 1e4, 1.0)
        values = {"model": instance.model, "port": str(instance.port), "gpu": self.config.gpu,
                  "tier": self.config.checkpoint_tier, "kv_tokens": str(self.config.kv_tokens),
                  "init_s": str(self.config.init_s), "master_port": str(instance.port + 20000),
                  "memory_fraction": f"{fraction:.4f}", "schedctl": schedctl_executable()}
        return [arg.format(**values) for arg in self.template]

    async def _until_healthy(self, instance: Instance, proc: asyncio.subprocess.Process) -> None:
        """Until our launcher's server answers /health 200; PortTaken if the port is someone else's."""
        while True:
            if proc.returncode is not None:
                if await asyncio.to_thread(port_in_use, instance.port):
                    raise PortTaken(f"port {instance.port} is held by another process "
                                    f"(the launcher exited with {describe_exit(proc.returncode)})")
                raise BackendRequestError("load_failed", f"the launcher (pid {proc.pid}) exited with "
                                          f"{describe_exit(proc.returncode)} before it was ready")
            if await instance.backend.healthy():
                if await asyncio.to_thread(listener_is_ours, instance.port, proc.pid):
                    return
                raise PortTaken(f"port {instance.port} is answered by a process outside the launcher's tree")
            await asyncio.sleep(HEALTH_POLL_S)

    async def _watch(self, instance: Instance, proc: asyncio.subprocess.Process | None) -> None:
        if proc is None:
            return
        code = await proc.wait()
        if instance.state != "evicting":
            await self._fail(instance, f"instance of {instance.model} (pid {proc.pid}) exited with "
                             f"{describe_exit(code)}")

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
        await instance.backend.close()  # its idle pooled connections go with it
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
        if self._probe is not None:
            await self._probe.aclose()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _terminate(proc: asyncio.subprocess.Process | None) -> None:
    """SIGTERM to the instance's process group (a launcher and everything it started), SIGKILL
    after STOP_GRACE_S, and a last SIGKILL for whatever of the group outlived the launcher."""
    if proc is None:
        return
    if proc.returncode is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True if binding host:port fails because something holds it."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT does not count
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def listener_is_ours(port: int, root_pid: int) -> bool:
    """True if the socket listening on `port` belongs to `root_pid` or one of its descendants,
    or if that cannot be told here (no /proc/net: trust /health, as before the check existed).

    Another user's process shows no pid (its /proc entries are closed to us): not ours."""
    try:
        tree = {root_pid} | {p.pid for p in psutil.Process(root_pid).children(recursive=True)}
        owners = {c.pid for c in psutil.net_connections("tcp")
                  if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}
    except psutil.NoSuchProcess:
        return False  # the launcher is gone: whoever answers, it is not ours
    except (psutil.Error, OSError) as exc:
        log.debug("cannot tell who listens on port %d (%s): trusting /health", port, exc)
        return True
    return bool(owners & tree) or not owners


def check_launcher(backend: str, template: tuple[str, ...]) -> None:
    """Refuse to start with a launcher that is not installed (ConfigError: one line with the fix)."""
    program = template[0]
    if "{" in program or shutil.which(program) is not None:
        return
    if backend == "tgi":
        raise ConfigError(
            f"backend = \"tgi\" but {program} is not an executable on PATH: install TGI 3.x "
            "(text-generation-launcher) or set tgi_launcher to its path; on a host without a GPU, "
            "tgi_launcher = \"schedctl-tgi-launcher\" runs the emulator behind TGI's launcher")
    raise ConfigError(f"launcher {program!r} is not on PATH: install it or fix `launcher` in [node]")


def make_manager(config: NodeConfig, catalog: Catalog, memory_total: Callable[[], int],
                 on_change: Callable[[], None]) -> ModelManager:
    """The node's model manager for its `backend`: instances as processes (emulator, tgi), or
    the emulator's engine inside this process (emulator-inproc, daemons/node/inproc.py)."""
    if config.backend == INPROC:
        from daemons.node.inproc import InprocModelManager

        return InprocModelManager(config, catalog, memory_total, on_change)
    # Every instance of this node speaks HTTP: load the client stack (httpx, huggingface_hub;
    # about 0.1 s) now, before the node is ready, not in its first cold start's path.
    import daemons.node.backend  # noqa: F401

    return ModelManager(config, catalog, memory_total, on_change)


def _die_with_parent() -> None:
    # An instance must not outlive its node: if the node is killed (even with SIGKILL),
    # the kernel sends SIGTERM to the instance (PR_SET_PDEATHSIG = 1).
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
