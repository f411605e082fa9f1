"""Hybrid peers with a failover pair of coordinators (daemons/coordinator/failover.py): the
rule of which one a peer follows (`Following`) and the peer's settings. The processes, the
primary killed and the standby followed: tests/hybrid/test_hybrid_run.py."""

from __future__ import annotations

import pytest

from daemons.core.errors import ConfigError
from daemons.node.config import NodeConfig
from daemons.node.hybrid_mode import Following

PRIMARY, STANDBY = "tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"


def test_a_peer_follows_the_active_coordinator_with_the_newest_epoch() -> None:
    follow = Following((PRIMARY, STANDBY))
    assert follow.current == PRIMARY
    assert not follow.active(PRIMARY, 1) and follow.epoch == 1  # the primary, active: nothing changes
    assert follow.active(STANDBY, 2) and follow.current == STANDBY  # the standby took over
    assert not follow.active(PRIMARY, 1) and follow.current == STANDBY  # a deposed primary, not told yet
    assert not follow.active("tcp://10.0.0.9:5555", 9)  # not ours
    assert follow.refused(STANDBY) and follow.current == PRIMARY  # it says it is passive: the other
    assert not follow.refused(STANDBY)  # not the one followed: nothing to do
    alone = Following((PRIMARY,))
    assert not alone.refused(PRIMARY) and alone.current == PRIMARY  # nobody to turn to


def test_a_standby_needs_its_events_and_a_hybrid_peer() -> None:
    hybrid = {"scheduler": "hybrid", "coordinator": PRIMARY, "coordinator_events": "tcp://10.0.0.1:5557"}
    with pytest.raises(ConfigError, match="set both"):
        NodeConfig(**hybrid, standby=STANDBY)
    with pytest.raises(ConfigError, match="standby_events name a hybrid peer's standby"):
        NodeConfig(standby=STANDBY, standby_events="tcp://10.0.0.2:5557")
    assert NodeConfig(**hybrid, standby=STANDBY, standby_events="tcp://10.0.0.2:5557").standby == STANDBY
