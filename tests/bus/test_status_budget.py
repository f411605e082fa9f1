"""Status replies stay under the frame limit at the member cap, saying how many rows were cut."""

from __future__ import annotations

from daemons.bus import decode, encode
from daemons.bus.envelope import MAX_FRAME_BYTES
from daemons.bus.status import status_reply
from daemons.gossip.config import GossipConfig


def test_a_gossip_peers_status_at_the_member_cap_fits_one_frame() -> None:
    n = GossipConfig.lan().max_members
    rows = [{"node": f"node-{i:05d}", "alive": True, "status": "alive", "record_age_s": 0.5,
             "gossip_addr": f"tcp://10.0.{i // 256}.{i % 256}:5561", "models": ["org/model-a", "org/model-b"]}
            for i in range(n)]
    reply = status_reply("gossip-peer", rows, {"epoch": 0})
    frame = encode(reply, "peer-0")
    assert len(frame) <= MAX_FRAME_BYTES
    body = decode(frame).body
    assert 0 < len(body.nodes) < n and len(body.nodes) + body.info["omitted_nodes"] == n
    assert body.nodes == rows[: len(body.nodes)]  # the leading rows, in the caller's order


def test_a_small_status_is_untouched() -> None:
    rows = [{"node": "a"}, {"node": "b"}]
    assert status_reply("coordinator", rows, {"x": 1}).info == {"x": 1}
