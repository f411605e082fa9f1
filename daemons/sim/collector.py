"""The experiment's observer in a simulated run: nodes.csv samples and its silence detector.

As the real collector (cli/experiment/collector.py): the nodes publish their NodeState to
it (over the simulated wire); once a second it samples every node's latest state
(`state_sample`, the row both collectors write); a node whose states stop for
`silent_after_s` gets a `silent` event, `heard_again` when they resume (`;restarted` when
a new generation speaks).
"""

from __future__ import annotations

from collections.abc import Callable

from daemons.core.messages import NodeState
from daemons.rundir import NodeSample
from daemons.rundir.nodes import state_sample
from daemons.sim.clock import Clock


class SimCollector:
    def __init__(self, clock: Clock, emit: Callable[[str, str, str], None], silent_after_s: float,
                 every_s: float = 1.0) -> None:
        self.clock, self._emit = clock, emit
        self.silent_after_s, self.every_s = silent_after_s, every_s
        self.samples: list[NodeSample] = []
        self._latest: dict[str, tuple[float, NodeState]] = {}
        self._silent: set[str] = set()

    def start(self) -> None:
        self.clock.after(self.every_s, self._sample)

    def take(self, state: NodeState) -> None:
        now = self.clock.now
        name = state.node
        previous = self._latest.get(name)
        if name in self._silent:
            self._silent.discard(name)
            restarted = previous is not None and previous[1].gen != state.gen
            detail = f"after {now - previous[0]:.1f} s" if previous else ""
            self._emit("heard_again", name, detail + (";restarted" if restarted else ""))
        self._latest[name] = (now, state)

    def _sample(self) -> None:
        now = self.clock.now
        for name, (heard, state) in sorted(self._latest.items()):
            alive = now - heard < self.silent_after_s
            if not alive and name not in self._silent:
                self._silent.add(name)
                self._emit("silent", name, f"no NodeState for {now - heard:.1f} s")
            self.samples.append(state_sample(round(now, 3), state, alive))
        self.clock.after(self.every_s, self._sample)
