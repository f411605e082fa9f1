"""Faults in a simulated run: kill, stop, pause, restart and partition, on the virtual clock.

The same plan as the real injector's (cli/experiment/faults.py: AT:KIND:TARGET[:DURATION],
targets already resolved to node names or `coordinator`), and the same events.csv rows:
`fault` (detail `kind=...[;duration_s=...]`), then `resumed`, `healed` or `started_again`.
What a fault does is what its signal does to the process:

- kill / stop: the process is gone with its instances (they die with their parent); the
  load generator's and the peers' links to it drop (they notice after one latency);
  a gossip member stops answering (stop: after a graceful leave);
- pause: the agent's frames are held both ways until it continues (its instances, being
  other processes, keep generating); its gossip member stops, as with SIGSTOP;
- restart: kill, DURATION of downtime, then a new generation with nothing loaded;
- partition: every frame to or from the node is held until the link heals (TCP keeps
  retrying), and the gossip network drops its messages meanwhile;
- migrate: not a failure: the node is sent a `Migrate` to the next node (the real injector's
  rule, daemons/node/migration.py `fault_destination`), recorded as `migrate_ordered`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemons.node.migration import fault_destination
from daemons.rundir.events import fault_detail

if TYPE_CHECKING:
    from daemons.sim.engine import Simulation

KINDS = ("kill", "stop", "pause", "restart", "partition", "migrate")


@dataclass(frozen=True)
class SimFault:
    at_s: float
    kind: str
    target: str  # a node name or "coordinator"
    duration_s: float = 0.0


def schedule_faults(sim: Simulation, faults: list[SimFault]) -> None:
    for fault in faults:
        sim.clock.at(fault.at_s, lambda f=fault: _fire(sim, f))  # type: ignore[misc]


def _fire(sim: Simulation, fault: SimFault) -> None:
    kind, target = fault.kind, fault.target
    if kind == "migrate":  # an order, not a failure (cli/experiment/faults.py)
        destination = fault_destination(list(sim.nodes), target)
        if not destination:
            sim.emit("injection_failed", target, f"cannot migrate off {target!r}: it needs to be one of two "
                                                 "or more nodes")
            return
        sim.emit("migrate_ordered", target, f"to={destination}")
        sim.order_migration(target, destination, "migrate fault")
        return
    sim.emit("fault", fault.target, fault_detail(fault.kind, fault.duration_s))
    if kind in ("kill", "stop"):
        _down(sim, target, graceful=kind == "stop")
    elif kind == "restart":
        _down(sim, target, graceful=True)
        sim.clock.after(fault.duration_s, lambda: _up(sim, target))
    elif kind == "pause":
        _pause(sim, target, True)
        sim.clock.after(fault.duration_s, lambda: _pause(sim, target, False))
    elif kind == "partition":
        _cut(sim, target, True)
        sim.clock.after(fault.duration_s, lambda: _cut(sim, target, False))


def _down(sim: Simulation, target: str, graceful: bool) -> None:
    sim.wire.kill(target)
    if target == "coordinator":
        assert sim.coordinator is not None
        sim.coordinator.kill()
        if not sim.peered:  # hybrid: the load generator talks to the peers only
            sim.clock.after(sim.config.latency_s, lambda: sim.client.link_lost("coordinator"))
        _coordinator_silence(sim)
        return
    node = sim.nodes[target]
    node.kill()
    if target in sim.peers:
        sim.peers[target].kill()
        if graceful:
            sim.clock.net.leave(target)
        sim.clock.net.kill(target)
        for peer in sim.peers.values():
            if peer.name != target:
                sim.clock.after(sim.config.latency_s, lambda p=peer: p.lost(target))  # type: ignore[misc]
    sim.clock.after(sim.config.latency_s, lambda: sim.client.link_lost(node.endpoint))


def _up(sim: Simulation, target: str) -> None:
    sim.wire.revive(target)
    if target == "coordinator":
        assert sim.coordinator is not None
        sim.coordinator.restart()
        _coordinator_heard(sim)
    else:
        node = sim.nodes[target]
        sim.client.link_back(node.endpoint)
        if target in sim.peers:
            sim.clock.net.restart(target)
            sim.peers[target].publish(node.snapshot())
        node.restart()
    sim.emit("started_again", target, "kind=restart")


def _pause(sim: Simulation, target: str, paused: bool) -> None:
    if paused:
        sim.wire.pause(target)
        if target in sim.peers:
            sim.clock.net.pause(target)
        if target == "coordinator" and sim.coordinator is not None:
            sim.coordinator.pause()
            _coordinator_silence(sim)
        return
    sim.wire.resume(target)
    if target in sim.peers:
        sim.clock.net.resume(target)
    if target == "coordinator" and sim.coordinator is not None:
        sim.coordinator.resume(4 * sim.config.latency_s + sim.config.costs.state_s * len(sim.nodes))
        _coordinator_heard(sim)
    sim.emit("resumed", target, "kind=pause;SIGCONT")


def _cut(sim: Simulation, target: str, cut: bool) -> None:
    if cut:
        sim.wire.cut(target)
        if target in sim.peers:
            sim.clock.net.partition([target])
        return
    sim.wire.heal(target)
    if target in sim.peers:
        sim.clock.net.heal()
    sim.emit("healed", target, "kind=partition")


def _coordinator_silence(sim: Simulation) -> None:
    """The collector's view of a coordinator that stopped beating (cli/experiment/collector.py):
    `coordinator_silent` once its heartbeats (1 s apart) are missing for coordinator_silent_s."""
    party = sim.wire.parties["coordinator"]
    gen = party.gen

    def check() -> None:
        if not party.reachable and party.gen in (gen, gen + 1) and not sim.coordinator_silent:
            sim.coordinator_silent = True
            sim.emit("coordinator_silent", "coordinator", f"no heartbeat for {sim.config.coordinator_silent_s:.1f} s")

    sim.clock.after(sim.config.coordinator_silent_s, check)


def _coordinator_heard(sim: Simulation) -> None:
    """Its next heartbeat reaches the collector: what it says then (with a standby, a deposed
    primary says passive and the epoch it heard)."""
    coordinator = sim.coordinator
    if sim.coordinator_silent and coordinator is not None:
        sim.coordinator_silent = False

        def heard() -> None:
            star = coordinator.failover.star if coordinator.failover is not None else None
            detail = "active" if star is None else f"{star.state.value};epoch={star.epoch}"
            sim.emit("coordinator_heard_again", "coordinator", detail)

        sim.clock.after(2 * sim.config.latency_s, heard)
