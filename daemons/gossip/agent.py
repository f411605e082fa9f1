"""`GossipAgent`: one gossip peer (config + memberlist + ZeroMQ transport), and its CLI.

Embedding in a daemon (all on the daemon's asyncio loop)::

    agent = GossipAgent("node-3", "tcp://0.0.0.0:5561", advertise="tcp://10.0.0.3:5561",
                        seeds=["tcp://10.0.0.1:5561"], config=GossipConfig.lan())
    agent.add_listener(lambda ev: log.info("%s %s", ev.kind, ev.node))
    await agent.start()
    agent.update_local_record({"gpus": [...], "queue_depth": 3, "models": [...], "endpoint": ...})
    for member in agent.view():  # status, record body and its age, per member
        ...
    await agent.stop()           # leaves gracefully, then closes the sockets

Run one peer from a shell (used by the benchmark and the integration tests)::

    python -m daemons.gossip.agent --id n1 --bind tcp://127.0.0.1:7001 \\
        --seed tcp://127.0.0.1:7000 --preset ci

With ``--metrics-bind HOST:PORT`` it also serves its Prometheus metrics
(daemons/gossip/metrics.py). It writes one JSON object per line on stdout:
``ready``, every membership ``event``, periodic ``stats``, and a ``view`` on request. It reads JSON commands
on stdin: ``{"cmd": "record", "body": {...}}``, ``{"cmd": "view"}``,
``{"cmd": "leave"}``, ``{"cmd": "stop"}``. SIGTERM / SIGINT stop it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import zmq.asyncio

from daemons.bus import activation
from daemons.bus.metrics import Endpoint, parse_bind
from daemons.bus.security import CurveClient, CurveServer
from daemons.core.errors import ConfigError
from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import MemberEvent, Memberlist
from daemons.gossip.transport import ZmqTransport

log = logging.getLogger("schedctl.gossip")


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member as the agent sees it now."""

    node: str
    addr: str
    status: str  # "alive", "suspect", "dead", "left"
    generation: int
    incarnation: int
    record: Mapping[str, Any] | None
    record_version: int | None
    record_age_s: float | None  # seconds since that version reached us (our clock)
    is_self: bool


class GossipAgent:
    """A gossip peer on the current asyncio loop. See the module docstring."""

    def __init__(
        self,
        node_id: str,
        bind: str,
        *,
        advertise: str | None = None,
        seeds: Iterable[str] = (),
        config: GossipConfig | None = None,
        generation: int | None = None,
        rng: random.Random | None = None,
        ctx: zmq.asyncio.Context | None = None,
        curve_server: CurveServer | None = None,
        curve_client: CurveClient | None = None,
    ) -> None:
        self._ctx, self._curve = ctx, (curve_server, curve_client)
        self.node_id = node_id
        self.bind = bind
        self.addr = advertise or bind
        self.seeds = tuple(seeds)
        self.config = config or GossipConfig.lan()
        # Boot time in ms: grows across restarts, so a restart supersedes the old life.
        self.generation = generation if generation is not None else time.time_ns() // 1_000_000
        self._rng = rng
        self._listeners: list[Callable[[MemberEvent], None]] = []
        self._ml: Memberlist | None = None
        self._transport: ZmqTransport | None = None

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Bind, start the protocol and join the seeds (retried until one answers)."""
        clock = time.monotonic
        self._ml = Memberlist(
            self.node_id, self.addr, config=self.config, generation=self.generation,
            rng=self._rng, now=clock(),
        )
        self._transport = ZmqTransport(self._ml, self.bind, on_events=self._dispatch, clock=clock, ctx=self._ctx,
                                       curve_server=self._curve[0], curve_client=self._curve[1])
        await self._transport.start()
        self._transport.run(self._ml.join(clock(), self.seeds))

    @property
    def bound(self) -> str:
        """The endpoint the transport really bound ("" until started)."""
        return self._transport.bound if self._transport is not None else ""

    async def stop(self, leave: bool = True, timeout: float | None = None) -> None:
        """Announce a graceful leave (unless `leave` is False), let it spread, close sockets."""
        if self._transport is None or self._ml is None:
            return
        if leave and not self._ml.left:
            self._transport.run(self._ml.leave(self._transport.now()))
            limit = timeout if timeout is not None else 4 * self.config.gossip_interval
            deadline = self._transport.now() + limit
            while self._ml.queued_broadcasts and self._transport.now() < deadline:
                await asyncio.sleep(self.config.gossip_interval / 2)
        await self._transport.stop()
        self._transport = None

    # ------------------------------------------------------------ use
    def update_local_record(self, body: Mapping[str, Any]) -> None:
        """Publish a new record body (coalesced to at most one version per max(0.5 s, N/128 s))."""
        ml, transport = self._running()
        transport.run(ml.update_local_record(transport.now(), body))

    def view(self) -> list[MemberView]:
        """Every known member (self first), dead ones until reaped."""
        ml, transport = self._running()
        out = []
        for m in ml.members(transport.now()):
            rec = m.record
            out.append(MemberView(
                m.node, m.addr, m.status.name.lower(), m.gen, m.inc,
                None if rec is None else rec.body, None if rec is None else rec.ver,
                m.record_age, m.is_self,
            ))
        return out

    def live_members(self) -> list[str]:
        """Ids of members believed alive (self included)."""
        return [m.node for m in self.view() if m.status == "alive"]

    def add_listener(self, callback: Callable[[MemberEvent], None]) -> None:
        """Call `callback(event)` for every membership event, on the loop, in order."""
        self._listeners.append(callback)

    @property
    def memberlist(self) -> Memberlist:
        return self._running()[0]

    @property
    def transport(self) -> ZmqTransport:
        return self._running()[1]

    def _running(self) -> tuple[Memberlist, ZmqTransport]:
        if self._ml is None or self._transport is None:
            raise RuntimeError("GossipAgent is not running (call start())")
        return self._ml, self._transport

    def _dispatch(self, events: list[MemberEvent]) -> None:
        for ev in events:
            for callback in self._listeners:
                try:
                    callback(ev)
                except Exception:  # a listener's bug must not stop gossip
                    log.exception("gossip event listener failed")


# ====================================================================== CLI
def _emit(obj: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _event_json(ev: MemberEvent) -> dict[str, Any]:
    return {
        "ev": "event", "t": time.time(), "kind": ev.kind.value, "node": ev.node, "gen": ev.gen,
        "inc": ev.inc, "ver": None if ev.record is None else ev.record.ver, "origin": ev.origin,
        "restarted": ev.restarted,
    }


def _stats_json(agent: GossipAgent) -> dict[str, Any]:
    st = agent.transport.stats
    ml = agent.memberlist
    return {
        "ev": "stats", "t": time.time(), "node": agent.node_id, "live": ml.num_live,
        "health": ml.health, "inc": ml.incarnation, "bytes_in": st.bytes_in, "bytes_out": st.bytes_out,
        "msgs_in": st.msgs_in, "msgs_out": st.msgs_out, "send_dropped": st.send_dropped,
        "malformed": dict(st.malformed), "refutations": ml.stats.refutations,
    }


def _view_json(agent: GossipAgent) -> dict[str, Any]:
    members = [
        {
            "node": m.node, "addr": m.addr, "status": m.status, "gen": m.generation, "inc": m.incarnation,
            "ver": m.record_version, "age": m.record_age_s, "record": m.record, "self": m.is_self,
        }
        for m in agent.view()
    ]
    return {"ev": "view", "t": time.time(), "node": agent.node_id, "members": members}


async def _read_commands(agent: GossipAgent, stop: asyncio.Event) -> None:
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # /dev/null, a file or a tty: no command channel
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return  # no usable stdin (closed, a tty under some runners): commands disabled
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            return  # EOF: keep running, commands simply stop
        try:
            cmd = json.loads(line)
            name = cmd["cmd"]
            if name == "record":
                agent.update_local_record(cmd["body"])
            elif name == "view":
                _emit(_view_json(agent))
            elif name == "stats":
                _emit(_stats_json(agent))
            elif name == "leave":
                agent.transport.run(agent.memberlist.leave(agent.transport.now()))
            elif name == "stop":
                stop.set()
            else:
                raise ValueError(f"unknown command {name!r}")
        except (ValueError, KeyError, TypeError) as exc:
            _emit({"ev": "error", "t": time.time(), "error": str(exc)[:200]})


async def _churn(agent: GossipAgent, period: float, rng: random.Random) -> None:
    """Change our record every ~`period` s, like a busy node's queue depth does."""
    while True:
        await asyncio.sleep(rng.expovariate(1.0 / period))
        agent.update_local_record(_sample_record(agent, rng.randrange(64)))


def _sample_record(agent: GossipAgent, queue_depth: int) -> dict[str, Any]:
    return {
        "gpus": [{"idx": 0, "mem_total": 80 << 30, "mem_used": queue_depth << 28, "util": queue_depth / 64}],
        "queue_depth": queue_depth,
        "models": ["meta-llama/Llama-3.1-8B-Instruct"],
        "endpoint": agent.addr,
    }


async def run_agent(args: argparse.Namespace) -> int:
    config = GossipConfig.preset(args.preset)
    agent = GossipAgent(args.id, args.bind, advertise=args.advertise, seeds=args.seed, config=config)
    agent.add_listener(lambda ev: _emit(_event_json(ev)))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    endpoint = _serve_metrics(agent, args.metrics_bind) if args.metrics_bind else None
    agent.update_local_record(json.loads(args.record) if args.record else _sample_record(agent, 0))
    _emit({"ev": "ready", "t": time.time(), "node": args.id, "addr": agent.addr, "gen": agent.generation})
    tasks = [asyncio.create_task(_read_commands(agent, stop))]
    rng = random.Random()
    if args.churn > 0:
        tasks.append(asyncio.create_task(_churn(agent, args.churn, rng)))

    async def report() -> None:
        while True:
            await asyncio.sleep(args.stats_interval)
            _emit(_stats_json(agent))

    if args.stats_interval > 0:
        tasks.append(asyncio.create_task(report()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=args.duration if args.duration > 0 else None)
    for task in tasks:
        task.cancel()
    _emit(_stats_json(agent))
    await agent.stop(leave=not args.no_leave)
    if endpoint is not None:
        endpoint.close()
    _emit({"ev": "stopped", "t": time.time(), "node": args.id})
    return 0


def _serve_metrics(agent: GossipAgent, bind: str) -> Endpoint:
    """The peer's Prometheus endpoint, on its own registry (imported here: metrics.py imports us)."""
    from prometheus_client import CollectorRegistry

    from daemons.bus.metrics import serve
    from daemons.gossip.metrics import GossipMetrics

    registry = CollectorRegistry()
    GossipMetrics.of(agent, registry)
    return serve(registry, bind)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m daemons.gossip.agent", description="Run one gossip peer.")
    p.add_argument("--id", required=True, help="node id (unique in the cluster)")
    p.add_argument("--bind", required=True, help="ROUTER address to bind, e.g. tcp://127.0.0.1:5561")
    p.add_argument("--advertise", help="address peers use to reach us (default: --bind)")
    p.add_argument("--seed", action="append", default=[], help="address of a member to join (repeatable)")
    p.add_argument("--preset", default="lan", choices=["lan", "wan", "local", "ci"])
    p.add_argument("--record", help="initial record body as JSON (default: a sample GPU record)")
    p.add_argument("--churn", type=float, default=0.0, help="change the record every ~S seconds (load)")
    p.add_argument("--stats-interval", type=float, default=0.0, help="print stats every S seconds")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: run until signalled)")
    p.add_argument("--no-leave", action="store_true", help="stop without announcing a leave")
    p.add_argument("--metrics-bind", default="", help="HOST:PORT of a Prometheus /metrics endpoint (default: none)")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    if not args.bind.startswith(("tcp://", "ipc://")):
        p.error("--bind must be a tcp:// or ipc:// address")
    if args.metrics_bind:
        try:
            parse_bind(args.metrics_bind)
        except ConfigError as exc:
            p.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    activation.adopt()  # a launcher's listening socket for --bind, and the duty to die with it
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run_agent(args))
    except OSError as exc:  # zmq.ZMQError is an OSError: e.g. address in use
        print(f"gossip agent: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:  # the metrics endpoint could not bind
        print(f"gossip agent: {exc}", file=sys.stderr)
        return 2


__all__ = ["GossipAgent", "MemberView", "main", "run_agent"]


if __name__ == "__main__":
    sys.exit(main())

