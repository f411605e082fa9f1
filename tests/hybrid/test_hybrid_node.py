"""One hybrid peer and a real coordinator, as processes on loopback: a cold start goes to the
coordinator, a warm request stays with the peer, a stopped coordinator (SIGSTOP: connected but
silent) turns the peer degraded, and SIGCONT brings the coordinator's decisions back."""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

from daemons.coordinator.testing import Client as CoordinatorClient
from daemons.coordinator.testing import running_coordinator
from daemons.core.messages import Done, Infer
from daemons.node.config import EMULATOR_LAUNCHER
from daemons.node.testing import Client, NodeProcess, free_endpoint, running_node, wait_until

OPT, LLAMA2, LLAMA3 = "facebook/opt-125m", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"


def served(client: Client, rid: str, model: str) -> Done:
    client.send(Infer(rid, model, "a b c d", 4, action=""), rid)  # no action: the peer places it
    finals = [e.body for e in client.until({"done", "error"}, timeout_s=30) if e.id == rid]
    assert finals and isinstance(finals[-1], Done), finals
    return finals[-1]


def test_cold_to_the_coordinator_warm_to_the_peer_degraded_without_it(tmp_path: Path) -> None:
    with running_coordinator(tmp_path, model_map_every=0.2) as coord, \
            running_node(tmp_path, scheduler="hybrid", coordinator=coord.bind, coordinator_events=coord.events_bind,
                         publish_to=[coord.state_bind], gossip_bind=free_endpoint(), gossip_preset="ci",
                         models=[OPT, LLAMA2, LLAMA3], checkpoint_tier="gpu", referral_timeout_s=1.0) as node, \
            Client(node.bind) as client:
        with CoordinatorClient(coord.bind) as asker:
            asker.wait_for_nodes({"node-0"})
        cold = served(client, "r1", OPT)
        assert (cold.action, cold.decided_by) == ("COLD_START", "coordinator")
        warm = served(client, "r2", OPT)
        assert (warm.action, warm.decided_by) == ("SERVE", "peer")
        info = client.status().info
        assert not info["degraded"] and info["maps"] >= 1, info

        coord.proc.send_signal(signal.SIGSTOP)  # connected, but it answers nothing: the referral times out
        try:
            alone = served(client, "r3", LLAMA2)
            assert (alone.action, alone.decided_by) == ("COLD_START", "peer-degraded")
            assert served(client, "r4", OPT).decided_by == "peer"  # warm requests never needed it
            assert client.status().info["degraded"]
        finally:
            coord.proc.send_signal(signal.SIGCONT)
        wait_until("the peer defers to the coordinator again", lambda: not client.status().info["degraded"], 10)
        back = served(client, "r5", LLAMA3)
        assert (back.action, back.decided_by) == ("COLD_START", "coordinator")
        info = client.status().info
        assert info["decided"] == {"peer": 2, "coordinator": 2, "peer-degraded": 1} and info["degraded_spells"] == 1


def test_a_retry_after_a_full_holder_refused_goes_to_the_coordinator(tmp_path: Path) -> None:
    """Two holders of Llama-2, each with its one request permit (the emulator's
    max_concurrent_requests) taken by a long request, a third node that could load it, and an
    entry peer that cannot. The peer's policy picks a holder (warm: the peer's call), which
    refuses `overloaded`. From then on the coordinator decides, excluding the nodes tried: it
    tries the other holder (refused too), then cold-starts the third node: two referrals. Before,
    the peer retried the second holder itself from the same stale view: one referral."""
    one_permit = (*EMULATOR_LAUNCHER, "--max-concurrent-requests", "1")
    gossip = [free_endpoint() for _ in range(4)]
    with running_coordinator(tmp_path, model_map_every=0.2) as coord, contextlib.ExitStack() as stack:
        def hybrid(i: int, **fields: object) -> NodeProcess:
            return stack.enter_context(running_node(
                tmp_path, f"node-{i}", scheduler="hybrid", coordinator=coord.bind,
                coordinator_events=coord.events_bind, publish_to=[coord.state_bind], gossip_bind=gossip[i],
                seeds=[gossip[0]] if i else [], gossip_preset="ci", checkpoint_tier="gpu",
                publish_interval_s=0.2, gpu="a10g-24gb", **fields))

        entry = hybrid(0, models=[OPT])
        holders = [hybrid(i, models=[LLAMA2], launcher=one_permit) for i in (1, 2)]
        hybrid(3, models=[LLAMA2])
        with CoordinatorClient(coord.bind) as asker:
            asker.wait_for_nodes({f"node-{i}" for i in range(4)})
        busy = [stack.enter_context(Client(h.bind)) for h in holders]
        for i, client in enumerate(busy):  # an explicit action: served where sent, not placed (~10 s of decoding)
            client.send(Infer(f"busy-{i}", LLAMA2, "a b c d", 400, action="COLD_START"), f"busy-{i}")
        for client in busy:
            assert "first_token" in [e.type for e in client.until({"first_token"}, timeout_s=30)]
        client = stack.enter_context(Client(entry.bind))
        wait_until("the entry peer sees both holders ready", lambda: sum(
            1 for row in client.status().nodes
            if any(m["model"] == LLAMA2 and m["state"] == "ready" for m in row.get("models", []))) == 2, 20)
        done = served(client, "r", LLAMA2)
        assert (done.node, done.action, done.decided_by) == ("node-3", "COLD_START", "coordinator"), done
        info = client.status().info
        # each forward counts its path: the first the peer's, both retries the coordinator's
        assert info["referrals"] == 2 and info["decided"] == {"peer": 1, "coordinator": 2, "peer-degraded": 0}, info
