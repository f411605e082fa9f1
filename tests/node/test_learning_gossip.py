"""Pre-warming by gossip peers: a peer forecasts from the requests entering through it and,
when its holders cannot absorb the forecast, loads the model on itself (real peers on loopback)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import zmq

from daemons.core.messages import Infer
from daemons.node.testing import Client
from tests.coordinator.test_learning import Heard
from tests.node.test_gossip_mode import SMALL, peers, run, wait_for_model


@pytest.mark.timeout(90)
def test_a_peer_prewarms_itself_when_its_forecast_outgrows_the_holder(tmp_path: Path) -> None:
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    events = f"tcp://127.0.0.1:{sub.bind_to_random_port('tcp://127.0.0.1')}"
    try:
        with peers(tmp_path, 2, "power-of-d", models=[SMALL], checkpoint_tier="gpu", prewarm="on",
                   prewarm_instance_rps=2.0, publish_to=[events]) as nodes:
            holder = Client(nodes[0].bind)
            try:
                run(holder, "load", action="COLD_START")  # node-0 holds the model; node-1 is idle
            finally:
                holder.close()
            wait_for_model(nodes[1], "node-0", SMALL)
            heard = Heard(sub)
            heard.wait_connected("node-1")
            entry = Client(nodes[1].bind)
            try:
                rid = 0
                for per_second in (1, 2, 2):  # through node-1: x2 peers = 2, 4, 4 req/s in all
                    start = time.monotonic()
                    for _ in range(per_second):
                        entry.send(Infer(f"r{rid}", SMALL, "a b c d", 2, action=""), f"r{rid}")  # the peer places it
                        rid += 1
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
                wait_for_model(nodes[0], "node-1", SMALL, timeout_s=10)
            finally:
                entry.close()
            detail = heard.wait_prewarm()
            assert detail.startswith(f"by=node-1;model={SMALL};") and "ordered_by=node-1" in detail, detail
    finally:
        sub.close(0)
        ctx.term()


