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

One agent alone in a process, driven through JSON on stdin and stdout, is the test
harness of daemons/gossip/testing.py (the integration tests and the benchmark use it).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import zmq.asyncio

from daemons.bus.security import CurveClient, CurveServer
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


__all__ = ["GossipAgent", "MemberView"]
