"""Real peers on loopback: ZeroMQ transport, agent processes, garbage on the wire."""

from __future__ import annotations

import asyncio
import time

import msgpack
import zmq

from daemons.gossip.agent import GossipAgent
from daemons.gossip.config import GossipConfig
from daemons.gossip.memberlist import EventKind, MemberEvent
from daemons.gossip.testing import free_ports, peer_cluster

N = 5


def test_processes_converge_detect_kill9_and_survive_garbage() -> None:
    ports = free_ports(N)
    with peer_cluster() as c:
        seed = f"tcp://127.0.0.1:{ports[0]}"
        for i, port in enumerate(ports):
            c.spawn(f"p{i}", port, [] if i == 0 else [seed], "ci")
        ids = set(c.peers)
        assert c.wait_for(lambda: all(c.alive_view(p.node_id) == ids - {p.node_id} for p in c.peers.values()), 30.0), {
            p.node_id: c.membership(p.node_id) for p in c.peers.values()
        }

        # Garbage at p1's ROUTER: junk bytes, bad msgpack, wrong schema, extra frames, oversize.
        target = c.peers["p1"]
        ctx = zmq.Context()
        try:
            anon = ctx.socket(zmq.DEALER)  # no identity: not a gossip peer
            named = ctx.socket(zmq.DEALER)
            named.setsockopt(zmq.IDENTITY, b"tcp://127.0.0.1:1")
            for s in (anon, named):
                s.setsockopt(zmq.LINGER, 0)
                s.connect(target.addr)
            junk = [
                b"\xc1\xc1", b"", msgpack.packb([1, 1, "x", 0, 0]), msgpack.packb([1, 99, "x", 0, 0, [], []]),
                msgpack.packb([1, 1, "x", True, 0, ["p1"], []]), b"\x91" * 50_000 + b"\xc0",
            ]
            for _ in range(20):
                for frame in junk:
                    named.send(frame)
                    anon.send(frame)
                named.send_multipart([b"a", b"b"])
            named.send(b"x" * (70 * 1024))  # over MAXMSGSIZE: libzmq drops the connection
            time.sleep(0.5)
        finally:
            ctx.destroy(linger=0)
        target.send({"cmd": "stats"})
        assert c.wait_for(lambda: any(o.get("ev") == "stats" and o["malformed"] for o in target.lines), 10.0)
        stats = [o for o in target.lines if o.get("ev") == "stats"][-1]
        assert stats["malformed"].get("identity", 0) >= 1 and stats["malformed"].get("msgpack", 0) >= 1
        assert target.proc.poll() is None

        # p1 still works: its new record reaches everyone.
        target.send({"cmd": "record", "body": {"marker": 7}})

        def got_v2() -> bool:
            return all(
                any(o.get("kind") == "record-updated" and o["node"] == "p1" and (o["ver"] or 0) >= 2 for o in p.lines)
                for p in c.peers.values()
                if p.node_id != "p1"
            )

        assert c.wait_for(got_v2, 15.0)

        # kill -9 one peer: every other one declares it dead.
        c.kill9("p3")
        t0 = time.monotonic()
        others = [p for p in c.peers.values() if p.node_id != "p3"]
        assert c.wait_for(lambda: all(c.membership(p.node_id).get("p3") == "dead" for p in others), 20.0), {
            p.node_id: c.membership(p.node_id).get("p3") for p in others
        }
        elapsed = time.monotonic() - t0
        assert elapsed < 20.0
        # Nobody else was declared dead meanwhile.
        for p in others:
            assert all(k != "dead" for n, k in c.membership(p.node_id).items() if n != "p3")
    for p in c.peers.values():
        assert p.proc.poll() is not None  # every process we started is gone


async def test_in_process_agents_share_records_and_views() -> None:
    ports = free_ports(3)
    cfg = GossipConfig.ci()
    addrs = [f"tcp://127.0.0.1:{p}" for p in ports]
    agents = [GossipAgent(f"a{i}", addrs[i], seeds=addrs[:1] if i else [], config=cfg) for i in range(3)]
    events: list[MemberEvent] = []
    agents[2].add_listener(events.append)
    try:
        for a in agents:
            await a.start()
        for i, a in enumerate(agents):
            a.update_local_record({"queue_depth": i, "models": ["m"]})

        async def until(cond: object, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if cond():  # type: ignore[operator]
                    return True
                await asyncio.sleep(0.02)
            return bool(cond())  # type: ignore[operator]

        def converged() -> bool:
            return all(
                len(a.live_members()) == 3 and all(m.record is not None for m in a.view()) for a in agents
            )

        assert await until(converged, 10.0)
        view = {m.node: m for m in agents[2].view()}
        assert view["a2"].is_self and view["a0"].status == "alive"
        assert view["a1"].record == {"queue_depth": 1, "models": ["m"]}
        assert view["a1"].record_age_s is not None and view["a1"].record_age_s >= 0
        assert {e.node for e in events if e.kind is EventKind.JOINED} == {"a0", "a1"}
        await agents[0].stop()  # graceful leave
        assert await until(lambda: {m.node: m.status for m in agents[2].view()}["a0"] == "left", 5.0)
    finally:
        for a in agents:
            await a.stop(leave=False)
