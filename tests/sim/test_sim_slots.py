"""The simulated node's slot queue (`--max-running`): the agent's rule (daemons/node/slots.py
`SlotRule`), taken and handed on where the agent does (after the instance, before the batch)."""

from __future__ import annotations

import asyncio
import csv
import itertools
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemons.coordinator.testing import schedctl
from daemons.core.messages import Done, FirstToken, NodeState
from daemons.gossip.config import GossipConfig
from daemons.node.slots import SlotQueue, SlotRule
from daemons.policy.priority import CLASS_PRIORITY
from daemons.sim.clock import Clock
from daemons.sim.node import Asked, NodeKind, NodeRules, SimNode

SMALL = "facebook/opt-125m"
KIND = NodeKind("a100-80gb", "ssd", (SMALL,), 16384, 0.5)
BATCH, INTERACTIVE = CLASS_PRIORITY["batch"], CLASS_PRIORITY["interactive"]
HOLDER_AT = 0.0  # a long request takes the one slot; the others arrive while it runs
# (name, priority, arrival s): with aging 0.1 s, two classes are 0.2 s of waiting apart, so i2 (0.45 s
# after b1) goes after the batch requests that waited longer, and i1 (0.1 s after b1) before them
ARRIVALS = [("b1", BATCH, 3.0), ("b2", BATCH, 3.05), ("i1", INTERACTIVE, 3.1), ("i2", INTERACTIVE, 3.45)]


def simulated_order(max_running: int, aging_s: float, by_priority: bool) -> tuple[list[str], list[NodeState]]:
    """The order the simulated node starts the requests in (their first tokens), and its states."""
    clock = Clock(GossipConfig.preset("lan"), 0, (0.0005, 0.0005))
    states: list[NodeState] = []
    node = SimNode("node-0", KIND, clock, states.append, rules=NodeRules(max_running, by_priority, aging_s))
    started: list[str] = []

    def ask(name: str, priority: int, tokens: int) -> Asked:
        def reply(body: Any) -> None:
            if isinstance(body, FirstToken):
                started.append(name)
            assert not isinstance(body, Done) or body.tokens == tokens
        return Asked(name, SMALL, 50, tokens, "", reply, priority=priority)

    node.start()
    clock.at(HOLDER_AT, lambda: node.infer(ask("holder", BATCH, 3000)))
    for name, priority, t in ARRIVALS:
        clock.at(t, lambda n=name, p=priority: node.infer(ask(n, p, 20)))  # type: ignore[misc]
    clock.run_until(30.0)
    return started, states


def rule_order(aging_s: float, by_priority: bool) -> list[str]:
    """The agent's rule on the same sequence: one slot, held; the rest released one by one."""
    rule: SlotRule[str] = SlotRule(1, aging_s, by_priority)
    assert rule.take(SMALL, "holder", BATCH, HOLDER_AT) is None
    for name, priority, t in ARRIVALS:
        assert rule.take(SMALL, name, priority, t) is not None
    return ["holder"] + [w for _ in ARRIVALS if (w := rule.release(SMALL)) is not None]


@pytest.mark.parametrize(("aging_s", "by_priority"), [(0.1, True), (100.0, True), (0.1, False)])
def test_the_simulated_node_starts_waiters_in_the_rules_order(aging_s: float, by_priority: bool) -> None:
    started, states = simulated_order(1, aging_s, by_priority)
    assert started == rule_order(aging_s, by_priority)
    # while they wait, the published state counts them (queue depth, waiting per priority)
    assert max(s.queue_depth for s in states) == len(ARRIVALS)
    assert {"0": 2, "2": 2} in [s.waiting_by_priority for s in states]


def test_the_orders_differ_with_the_settings_so_the_comparison_can_fail() -> None:
    assert rule_order(0.1, True) == ["holder", "i1", "b1", "b2", "i2"]  # i2 came 0.45 s after b1: aged past
    assert rule_order(0.1, False) == ["holder", "b1", "b2", "i1", "i2"]
    assert rule_order(100.0, True) == ["holder", "i1", "i2", "b1", "b2"]
    started, states = simulated_order(0, 0.1, True)  # no limit: nothing waits, each starts on arrival
    assert started == ["holder", "b1", "b2", "i1", "i2"] and not any(s.waiting_by_priority for s in states)


def test_the_agents_asyncio_queue_gives_the_same_order() -> None:
    """The agent's SlotQueue (futures over the same rule), arrivals in the same order, aging
    too slow to matter on this time scale: the simulated node agrees with it."""
    async def agent() -> list[str]:
        slots, started = SlotQueue(max_running=1, aging_s=100.0), []

        async def request(name: str, priority: int) -> None:
            await slots.acquire(SMALL, priority)
            started.append(name)
            await asyncio.sleep(0.001)
            slots.release(SMALL)

        tasks = [asyncio.create_task(request("holder", BATCH))]
        await asyncio.sleep(0)
        for name, priority, _ in ARRIVALS:
            tasks.append(asyncio.create_task(request(name, priority)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return started

    assert asyncio.run(agent()) == simulated_order(1, 100.0, True)[0]


ONE_NODE = """
[experiment]
name = "slots"
scheduler = "centralized"
[workload]
duration_s = 3
rps = 4
cv = 1
seed = 3
models = ["facebook/opt-125m"]
prompt_tokens = 50
output_tokens = 300
[[nodes]]
count = 1
models = ["facebook/opt-125m"]
init_s = 0.5
"""


def served_spans(tmp_path: Path, *args: str) -> list[tuple[float, float]]:
    """(first token, done) of every request of a simulated one-node run, by first token."""
    config = tmp_path / "exp.toml"
    config.write_text(ONE_NODE)
    results = tmp_path / ("results" + "".join(args).replace("-", ""))
    out = subprocess.run([schedctl(), "experiment", "run", "--engine", "sim", "-c", str(config), "--results-dir",
                          str(results), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (run_dir,) = results.iterdir()
    with open(run_dir / "requests.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["status"] == "ok" and r["tokens"] == "300" for r in rows)
    return sorted((float(r["first_token_s"]), float(r["done_s"])) for r in rows)


def test_max_running_one_serves_one_request_at_a_time(tmp_path: Path) -> None:
    """`schedctl experiment run --engine sim --max-running 1`: each request starts after the
    previous one ended; without the limit the node batches them together."""
    one = served_spans(tmp_path, "--max-running", "1")
    assert all(nxt[0] > prev[1] for prev, nxt in itertools.pairwise(one))
    free = served_spans(tmp_path)
    assert any(nxt[0] < prev[1] for prev, nxt in itertools.pairwise(free))
