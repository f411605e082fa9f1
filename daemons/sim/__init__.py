"""The simulated engine: the same node, policy and gossip logic on one virtual clock.

`simulate(SimConfig(...), schedule)` runs a whole experiment arm in one process, with no
sockets, for clusters far larger than one machine (engine.py). The experiment runner
writes its result like a real run's (cli/experiment/simrun.py).
"""

from daemons.sim.coordinator import Costs
from daemons.sim.engine import SimConfig, SimResult, simulate
from daemons.sim.faults import SimFault
from daemons.sim.node import NodeKind

__all__ = ["Costs", "NodeKind", "SimConfig", "SimFault", "SimResult", "simulate"]
