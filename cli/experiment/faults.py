"""Fault schedules: what to break, when, and the thread that breaks it on time.

A fault is `AT:KIND:TARGET[:DURATION]`, e.g. `5:kill:node-1`, `4:pause:random-node:6`:

- AT: seconds after the load generator's t = 0 (the same clock as requests.csv);
- KIND: `kill` (SIGKILL: no goodbye), `stop` (SIGTERM: a graceful exit), `pause` (SIGSTOP
  for DURATION seconds, then SIGCONT: a hung process that comes back), `restart` (SIGTERM,
  wait for the exit, DURATION seconds of downtime (default 0), then the same command and
  config again: a new generation), `partition` (the node is cut off from everyone else for
  DURATION seconds, then reconnected: a pulled cable, the process keeps running),
  `migrate` (not a failure: the node live-migrates one running request to the next node,
  cli/experiment/moves.py; recorded as `migrate_ordered`, not as a fault);
- TARGET: `coordinator`, `node-K`, or `random-node` (picked with the workload seed, so a
  repeated run breaks the same node); `partition` takes nodes only.

On the local cluster a killed or stopped process stays down until the run ends, so its
detection shows; on a deployed cluster (hosts.py) systemd restarts a killed one. Every
fault is written to events.csv as kind `fault` with the target and `kind=...` in detail;
the end of a pause is `resumed`, the end of a partition `healed`.

Locally, `partition` puts every node in a network namespace of its own
(cli/experiment/netns.py), so it needs root and iproute2 and is checked before the run
starts; without a partition fault the local cluster stays on loopback. A deployed host is
partitioned with nftables (hosts.py).
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from daemons.core.errors import ConfigError
from daemons.rundir.events import fault_detail

KINDS = ("kill", "stop", "pause", "restart", "partition", "migrate")
FORMAT = "AT:KIND:TARGET[:DURATION] (e.g. 5:kill:node-1, 4:pause:random-node:6, 4:partition:node-1:5)"
TIMED = ("pause", "partition")  # a DURATION > 0 is required: the fault ends by itself


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    target: str  # coordinator | node-K | random-node
    duration_s: float = 0.0

    def __str__(self) -> str:
        text = f"{self.at_s:g}:{self.kind}:{self.target}"
        return text + (f":{self.duration_s:g}" if self.duration_s else "")


def parse_fault(text: str) -> Fault:
    """One fault from its `AT:KIND:TARGET[:DURATION]` text; ConfigError naming the format."""
    parts = text.strip().split(":")
    if len(parts) not in (3, 4):
        raise ConfigError(f"fault {text!r}: expected {FORMAT}")
    at, kind, target = parts[0], parts[1].strip().lower(), parts[2].strip()
    at_s = _seconds(at, "AT", text)
    duration_s = _seconds(parts[3], "DURATION", text) if len(parts) == 4 else 0.0
    if kind not in KINDS:
        raise ConfigError(f"fault {text!r}: unknown kind {kind!r}; use one of {', '.join(KINDS)} in {FORMAT}")
    if not (target in ("coordinator", "random-node") or _node_index(target) is not None):
        raise ConfigError(f"fault {text!r}: target {target!r} must be coordinator, node-K or random-node")
    if kind in TIMED and duration_s <= 0:
        raise ConfigError(f"fault {text!r}: {kind} needs a DURATION > 0 in {FORMAT}")
    if kind == "migrate" and (target == "coordinator" or duration_s):
        raise ConfigError(f"fault {text!r}: migrate takes node-K or random-node (the node to move a request "
                          "off) and no DURATION")
    if kind == "partition" and target == "coordinator":
        # The coordinator runs in the root namespace beside the load generator and the collector
        # (cli/experiment/netns.py): it has no link of its own to cut.
        raise ConfigError(f"fault {text!r}: partition takes node-K or random-node, not the coordinator "
                          "(it shares the root network namespace with the load generator, so it has no link "
                          "of its own to cut); use kill, pause or restart on the coordinator")
    if kind in ("kill", "stop") and duration_s:
        raise ConfigError(f"fault {text!r}: {kind} takes no DURATION (the process stays down); "
                          "use restart:TARGET:DURATION to bring it back")
    return Fault(at_s, kind, target, duration_s)


def parse_faults(texts: list[str] | tuple[str, ...]) -> tuple[Fault, ...]:
    return tuple(sorted((parse_fault(t) for t in texts), key=lambda f: f.at_s))


def check_targets(faults: tuple[Fault, ...], node_count: int, schedulers: tuple[str, ...]) -> None:
    """Targets must exist in the cluster every scheduler runs."""
    for f in faults:
        index = _node_index(f.target)
        if index is not None and index >= node_count:
            raise ConfigError(f"fault {f}: the cluster has nodes node-0..node-{node_count - 1}")
        if f.target == "coordinator" and "gossip" in schedulers:
            raise ConfigError(f"fault {f}: gossip mode has no coordinator; run it with --scheduler centralized "
                              "or hybrid")


def check_timing(faults: tuple[Fault, ...], duration_s: float) -> None:
    """A fault must fall inside the arrivals (0 <= AT < duration): after them nothing measures it.
    `duration_s` 0 (a whole trace replayed) has no known end: nothing to check."""
    for f in faults:
        if duration_s > 0 and f.at_s >= duration_s:
            raise ConfigError(f"fault {f}: at {f.at_s:g} s it comes after the last arrival ({duration_s:g} s, "
                              "--duration): schedule it earlier or raise --duration")


def resolve_targets(faults: tuple[Fault, ...], node_names: list[str], seed: int) -> list[Fault]:
    """Name each fault's node: `random-node` is picked with `seed` (the same one in every
    mode), `node-K` is the K-th of `node_names` (a deployed cluster's nodes have host names)."""
    rng = random.Random(seed)
    out = []
    for f in faults:
        index = _node_index(f.target)
        if f.target == "random-node":
            target = rng.choice(node_names)
        elif index is not None and f.target not in node_names:
            target = node_names[index]
        else:
            target = f.target
        out.append(Fault(f.at_s, f.kind, target, f.duration_s))
    return out


def _seconds(value: str, what: str, text: str) -> float:
    try:
        seconds = float(value.strip().removesuffix("s"))
    except ValueError:
        raise ConfigError(f"fault {text!r}: {what} {value!r} is not a number of seconds; expected {FORMAT}") from None
    if not (seconds >= 0 and seconds < float("inf")):
        raise ConfigError(f"fault {text!r}: {what} must be a finite number of seconds >= 0")
    return seconds


def _node_index(target: str) -> int | None:
    name, _, index = target.partition("-")
    return int(index) if name == "node" and index.isdigit() else None


def needs_netns(faults: tuple[Fault, ...]) -> bool:
    """Whether the local cluster must put its nodes in network namespaces for these faults."""
    return any(f.kind == "partition" for f in faults)


class Target(Protocol):
    """What the injector needs from a cluster (LocalCluster)."""

    def signal(self, name: str, sig: int) -> None: ...
    def restart(self, name: str, downtime_s: float) -> None: ...
    def cut(self, name: str, duration_s: float) -> None: ...  # partition: no traffic to or from `name` ...
    def heal(self, name: str) -> None: ...  # ... until this
    def migrate(self, name: str) -> str: ...  # a Migrate to `name`; returns the destination


Record = Callable[[str, str, str], None]  # (kind, target, detail) into events.csv


class Injector:
    """Fires each fault at t0 + at_s on the monotonic clock, in its own thread."""

    def __init__(self, faults: list[Fault], cluster: Target, record: Record) -> None:
        self.faults = sorted(faults, key=lambda f: f.at_s)
        self._cluster = cluster
        self._record = record
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def start(self, t0: float) -> None:
        """Start the clock: `t0` is the load generator's t = 0 (time.monotonic())."""
        if not self.faults:
            return
        thread = threading.Thread(target=self._run, args=(t0,), name="fault-injector", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self) -> None:
        """No more faults; a pause or partition in progress is ended now (SIGCONT, heal) so teardown works."""
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, t0: float) -> None:
        for fault in self.faults:
            if self._stop.wait(max(0.0, t0 + fault.at_s - time.monotonic())):
                return
            if fault.kind in TIMED:
                # Its own thread: the SIGCONT or heal must not hold back the faults after it.
                thread = threading.Thread(target=self._fire, args=(fault,), daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._fire(fault)

    def _fire(self, fault: Fault) -> None:
        detail = fault_detail(fault.kind, fault.duration_s)
        if fault.kind != "migrate":  # an order, not a failure: recorded with its destination below
            self._record("fault", fault.target, detail)
        try:
            if fault.kind == "migrate":
                self._record("migrate_ordered", fault.target, f"to={self._cluster.migrate(fault.target)}")
                return
            if fault.kind == "kill":
                self._cluster.signal(fault.target, signal.SIGKILL)
            elif fault.kind == "stop":
                self._cluster.signal(fault.target, signal.SIGTERM)
            elif fault.kind == "pause":
                self._cluster.signal(fault.target, signal.SIGSTOP)
                self._stop.wait(fault.duration_s)
                self._cluster.signal(fault.target, signal.SIGCONT)
                self._record("resumed", fault.target, "kind=pause;SIGCONT")
            elif fault.kind == "partition":
                self._cluster.cut(fault.target, fault.duration_s)
                self._stop.wait(fault.duration_s)
                self._cluster.heal(fault.target)
                self._record("healed", fault.target, "kind=partition")
            else:
                self._cluster.restart(fault.target, fault.duration_s)
                self._record("started_again", fault.target, "kind=restart")
        except Exception as exc:
            self.errors.append(f"{fault}: {exc}")
            self._record("injection_failed", fault.target, str(exc)[:200])
