"""`schedctl watch --cluster FILE`: a deployed cluster's daemons (CURVE on, the deployment's key
layout on loopback: tests/security/test_deployed.py) seen through the watch's sources."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from cli.watch.model import Snapshot
from cli.watch.sources import Feed, cluster_feed
from tests.security.test_deployed import deployed  # noqa: F401  (the fixture: a coordinator and gpu-1)


def watch_until(feed: Feed, done: Any, timeout_s: float = 20.0) -> Snapshot:
    feed.start()
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            snap = feed.poll()
            if done(snap) or time.monotonic() > deadline:
                return snap
            time.sleep(0.3)
    finally:
        feed.close()


def test_the_watch_sees_a_deployed_cluster_with_its_keys(deployed: dict[str, Any]) -> None:  # noqa: F811
    feed = cluster_feed(deployed["tmp"] / "cluster.toml")
    snap = watch_until(feed, lambda s: s.nodes[0].state == "alive" and s.coordinators[0].answering)
    (node,) = snap.nodes
    (coordinator,) = snap.coordinators
    assert (node.name, node.state) == ("gpu-1", "alive"), snap
    assert node.memory_total and node.heard_s_ago is not None and node.heard_s_ago < 2
    assert coordinator.answering and coordinator.state == "active" and coordinator.epoch is not None


def test_without_the_keys_the_cluster_says_nothing(deployed: dict[str, Any], tmp_path: Path) -> None:  # noqa: F811
    doc = tomllib.loads((deployed["tmp"] / "cluster.toml").read_text())
    del doc["security"]
    plain = tmp_path / "cluster.toml"
    plain.write_text(tomli_w.dumps(doc))
    snap = watch_until(cluster_feed(plain), lambda s: False, timeout_s=3.0)
    assert [n.state for n in snap.nodes] == ["unknown"] and not snap.coordinators[0].answering
