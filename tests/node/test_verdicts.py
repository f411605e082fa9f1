"""Which memberlist events a gossip peer reports as failure verdicts, and how they read."""

from __future__ import annotations

import pytest

from daemons.core.messages import ClusterEvent
from daemons.gossip.memberlist import EventKind, MemberEvent
from daemons.node.gossip_mode import verdict_event


def member_event(kind: EventKind, node: str = "node-1", origin: str | None = None,
                 restarted: bool = False) -> MemberEvent:
    return MemberEvent(kind, node, "tcp://127.0.0.1:1", gen=7, inc=3, at=1.0, origin=origin, restarted=restarted)


@pytest.mark.parametrize(("kind", "origin", "verdict", "detail"), [
    (EventKind.SUSPECT, "node-2", "suspect", "by=node-0;incarnation=3;accuser=node-2"),
    (EventKind.DEAD, "node-0", "dead", "by=node-0;incarnation=3;accuser=node-0"),
    (EventKind.ALIVE_AGAIN, None, "alive", "by=node-0;incarnation=3"),
])
def test_suspect_dead_and_alive_again_are_verdicts(kind: EventKind, origin: str | None, verdict: str,
                                                   detail: str) -> None:
    got = verdict_event(member_event(kind, origin=origin), "node-0", 1234.5)
    assert got == ClusterEvent(verdict, "node-1", detail, 1234.5)


def test_a_restart_rejoining_is_alive_and_the_rest_is_not_a_verdict() -> None:
    rejoined = verdict_event(member_event(EventKind.JOINED, restarted=True), "node-0", 1.0)
    assert rejoined is not None and (rejoined.kind, rejoined.detail) == ("alive", "by=node-0;incarnation=3;restarted")
    for kind in (EventKind.JOINED, EventKind.LEFT, EventKind.RECORD_UPDATED, EventKind.REAPED):
        assert verdict_event(member_event(kind), "node-0", 1.0) is None, kind
    assert verdict_event(member_event(EventKind.SUSPECT, node="node-0", origin="node-1"), "node-0", 1.0) is None
