"""The status table renders rows from any role: coordinator, node agent, gossip peer."""

from __future__ import annotations

from cli.status import render
from daemons.coordinator.testing import node_state
from daemons.core.messages import StatusReply
from daemons.core.schema import to_dict


def test_a_node_describing_itself() -> None:
    out = render(StatusReply("node", [to_dict(node_state("n0", ready=["m1"]))]))
    header, row, footer = out.splitlines()
    assert header.split()[:2] == ["NODE", "STATE"]
    assert row.split()[:4] == ["n0", "alive", "0", "0"]
    assert "16.0/80.0 GiB" in row and row.endswith("m1 ready q0 r0")
    assert footer == "1 node(s), 1 alive (as seen by the node)"


def test_a_gossip_peer_view_shows_suspects_and_record_age() -> None:
    rows = [{"node": "a", "alive": True, "status": "alive", "record_age_s": 0.25},
            {"node": "b", "alive": False, "status": "suspect", "record_age_s": 4.0},
            {"node": "c", "alive": False, "status": "dead"}]
    lines = render(StatusReply("gossip-peer", rows)).splitlines()
    assert [line.split()[1] for line in lines[1:4]] == ["alive", "suspect", "DEAD"]
    assert "0.2 s ago" in lines[1] and "4.0 s ago" in lines[2]
    assert lines[-1] == "3 node(s), 1 alive (as seen by the gossip-peer)"


def test_missing_fields_are_dashes() -> None:
    (_, row, _) = render(StatusReply("coordinator", [{"node": "x"}])).splitlines()
    assert row.split() == ["x", "-", "-", "-", "-", "-", "-", "-"]


def test_a_failover_coordinator_says_its_role_state_and_epoch() -> None:
    info = {"name": "standby", "role": "backup", "state": "active", "epoch": 2, "peer": "tcp://10.0.0.5:5555",
            "peer_state": "", "peer_heard_s_ago": None}
    last = render(StatusReply("coordinator", [{"node": "x"}], info)).splitlines()[-1]
    assert last.startswith("failover: standby is the backup, active in epoch 2; peer tcp://10.0.0.5:5555 never heard")
    assert "failover" not in render(StatusReply("coordinator", [{"node": "x"}], {"role": "standalone"}))


def test_the_admission_queue_is_one_line_under_the_table() -> None:
    info = {"queued": 3, "queue_by_model": {"m2": 2, "m1": 1}, "queue_limit": 64, "placed_from_queue": 7,
            "overloaded": 1, "queue_timeouts": 0}
    queue = render(StatusReply("coordinator", [{"node": "x"}], info)).splitlines()[-2]
    assert queue == ("queue: 3 waiting for capacity (m1 1, m2 2), limit 64 per model; 7 placed from it, "
                    "1 overloaded, 0 timed out")
    assert "queue:" not in render(StatusReply("node", [{"node": "x"}], {"epoch": 0}))
