"""Shared builders for the gossip tests."""

from __future__ import annotations

from daemons.gossip.config import GossipConfig
from daemons.gossip.messages import Status
from daemons.gossip.simnet import SimNetwork

# a Monte-Carlo model of memberlist's LAN defaults: all nodes know DEAD p99, seconds.
ALL_KNOW_P99 = {4: 7.9, 8: 8.8, 16: 10.5, 32: 12.1, 64: 13.5}


def record(i: int, q: int = 0) -> dict[str, object]:
    return {
        "gpus": [{"idx": 0, "mem_total": 80 << 30, "mem_used": q << 28, "util": 0.5}],
        "queue_depth": q,
        "models": ["llama-3.1-8b"],
        "endpoint": f"tcp://127.0.0.1:{5560 + i}",
    }


def joined_net(
    n: int, config: GossipConfig | None = None, *, seed: int = 1, wire: bool = False, bootstrap: bool = False,
    **kwargs: object,
) -> SimNetwork:
    """`n` members n0..n{n-1} with records, fully joined (through n0, or bootstrapped)."""
    net = SimNetwork(config or GossipConfig.lan(), seed=seed, wire=wire, **kwargs)  # type: ignore[arg-type]
    for i in range(n):
        net.add_node(f"n{i}", record=record(i))
    if bootstrap:
        net.bootstrap()
    else:
        for i in range(1, n):
            net.join(f"n{i}", ["n0"])
    assert net.run_for(30.0, until=net.fully_joined), "cluster did not converge"
    return net


def sees_all_alive(net: SimNetwork) -> bool:
    up = net.up_nodes()
    return all(net.status(o, t) is Status.ALIVE for o in up for t in up if o != t)
