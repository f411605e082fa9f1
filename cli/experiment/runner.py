"""Runs an experiment: for each scheduler, start a local cluster, replay the one schedule,
collect, write the results directory, tear everything down, and report.

Both schedulers replay the identical request schedule, generated once from the seed.
Each arm is handed to `on_outcome` (commands.py writes its report: cli/report/run_report.py) as
soon as it is written, so an arm that fails later cannot cost the finished ones their
results; the failure is an `ArmFailed` naming the arm, after what finished is written.
An arm stopped early (Ctrl-C, SIGTERM) is marked `"interrupted": true` in its manifest.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from cli.experiment.cluster import LocalCluster
from cli.experiment.collector import Collector
from cli.experiment.faults import Injector, check_targets, needs_netns, resolve_targets
from cli.experiment.host_sampler import HostSampler
from cli.experiment.netns import NetnsError, Network, check_support
from cli.experiment.progress import Ticker, expected_line
from cli.experiment.remote import RemoteCluster
from cli.experiment.spec import ExperimentSpec
from cli.watch.journal import Journal, LiveRun, start_journal
from daemons.bus import activation
from daemons.core.errors import ConfigError, SchedctlError
from daemons.loadgen.config import LoadgenConfig
from daemons.loadgen.results import Progress, Results, write_requests_csv
from daemons.loadgen.schedule import write_schedule_csv
from daemons.loadgen.sender import run as run_loadgen
from daemons.loadgen.workload import PlannedRequest, plan_fitted
from daemons.rundir import MANIFEST, REQUESTS, Slo, write_manifest

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunOutcome:
    scheduler: str
    run_dir: Path
    results: Results
    interrupted: bool = False


class ArmFailed(SchedctlError):
    """One arm of the comparison failed; the arms before it are written and reported."""

    def __init__(self, scheduler: str, run_dir: Path, cause: BaseException) -> None:
        self.scheduler, self.run_dir, self.cause = scheduler, run_dir, cause
        if self.user_error:  # already one line naming the fix (e.g. a deployed cluster that does not answer)
            super().__init__(str(cause))
            return
        text = str(cause) if isinstance(cause, SchedctlError) else f"{type(cause).__name__}: {cause}"
        first = text.strip().splitlines()[0] if text.strip() else type(cause).__name__
        super().__init__(f"the {scheduler} run failed: {first} (details: {run_dir / ERROR_FILE})")

    @property
    def user_error(self) -> bool:
        return isinstance(self.cause, ConfigError)


ERROR_FILE = "error.txt"
# manifest.json `policy` of each arm; hybrid: the peers' policy for warm requests + the coordinator's for the rest.
POLICY_OF: dict[str, Callable[[ExperimentSpec], str]] = {
    "centralized": lambda spec: spec.policy, "gossip": lambda spec: spec.gossip_policy,
    "hybrid": lambda spec: f"{spec.gossip_policy}+{spec.policy}"}


def run_experiment(spec: ExperimentSpec, say: Say, progress: Callable[[Progress], None] = lambda _: None,
                   stop: threading.Event | None = None,
                   on_outcome: Callable[[RunOutcome], None] = lambda _: None) -> list[RunOutcome]:
    schedule, notes = plan_fitted(spec.workload)  # fitted to each model's context
    for note in notes:
        say(note)
    schedulers, where = spec.schedulers, f"{spec.node_count} emulated GPU nodes"
    if spec.cluster_file:
        deployed = RemoteCluster.load(Path(spec.cluster_file))
        if deployed.scheduler not in schedulers:
            raise ConfigError(f"the cluster in {spec.cluster_file} runs {deployed.scheduler} scheduling: "
                              f"pass --scheduler {deployed.scheduler}")
        schedulers, where = (deployed.scheduler,), f"deployed cluster {spec.cluster_file}"
        check_targets(spec.fault_plan, len(deployed.node_endpoints), schedulers)
    elif spec.engine == "sim":
        where += " simulated on a virtual clock (--engine sim)"
    elif needs_netns(spec.fault_plan):
        check_support()  # before any results directory or process: a ConfigError naming the fix
        where += " in network namespaces (partition faults)"
    say(f"schedule: {len(schedule)} requests over {spec.workload.duration_s:g} s "
        f"(rps {spec.workload.rps:g}, cv {spec.workload.cv:g}, seed {spec.workload.seed}); cluster: {where}")
    say(expected_line(spec.workload.duration_s, list(schedulers), spec.timeout_s))
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    outcomes = []
    for scheduler in schedulers:
        run_dir = Path(spec.results_dir) / f"{spec.name}_{scheduler}_{stamp}"
        try:
            arm = run_simulated if spec.engine == "sim" else run_one
            outcome = arm(spec, scheduler, schedule, run_dir, say, progress, stop)
            on_outcome(outcome)
        except Exception as exc:  # any failure of an arm: recorded in its directory, reported in one line
            failed = ArmFailed(scheduler, run_dir, exc)
            if not failed.user_error:
                _write_error(run_dir, exc)
            raise failed from exc
        outcomes.append(outcome)
        if outcome.interrupted:
            break
    return outcomes


def _write_error(run_dir: Path, exc: BaseException) -> None:
    with contextlib.suppress(OSError):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).write_text("".join(traceback.format_exception(exc)))


def run_one(spec: ExperimentSpec, scheduler: str, schedule: list[PlannedRequest], run_dir: Path,
            say: Say, progress: Callable[[Progress], None],
            stop: threading.Event | None) -> RunOutcome:
    run_dir.mkdir(parents=True, exist_ok=False)
    write_schedule_csv(run_dir / "schedule.csv", schedule)
    cluster: LocalCluster | RemoteCluster
    if spec.cluster_file:
        cluster = RemoteCluster.load(Path(spec.cluster_file))
        collector = Collector(activation.offer(activation.listen()), poll=dict(cluster.node_endpoints),
                              curve=cluster.curve)
    else:
        collector, cluster = _local_cluster(spec, scheduler, run_dir)
    start_time = datetime.now(UTC)
    injector: Injector | None = None
    journal: Journal | None = None
    host = HostSampler()  # the host's and the run's CPU each second: host.csv
    host.start()
    try:
        coordinators = " and the coordinators" if spec.standby_coordinator else " and the coordinator"
        say(f"[{scheduler}] starting {spec.node_count} nodes" + (coordinators if scheduler != "gossip" else ""))
        cluster.start()
        if isinstance(cluster, LocalCluster):  # CURVE on: the collector's SUB is checked by ZAP
            collector.security = cluster.security_for()
        collector.events_from += [e for e in (cluster.coordinator_events, cluster.standby_events) if e]
        # Started once the coordinator's events address is known: the collector's thread
        # owns its socket and connects only at start. The nodes' PUBs reconnect to it.
        collector.start()
        journal = start_journal(run_dir, _live_run(spec, scheduler, cluster), collector.events)  # schedctl watch
        names = list(cluster.node_endpoints) if spec.cluster_file else [n for n, _ in spec.node_names()]
        faults = resolve_targets(spec.fault_plan, names, spec.workload.seed)
        ticker, t0 = Ticker(scheduler, spec.workload.duration_s), [time.monotonic()]

        def record(kind: str, target: str, detail: str) -> None:  # into events.csv, and a line as it happens
            collector.event(kind, target, detail)
            line = ticker.fault(kind, target, detail, time.monotonic() - t0[0])
            if line is not None:
                say(line)

        def beat(p: Progress) -> None:
            if journal is not None:
                journal.take_records(p.records, time.time() - (time.monotonic() - t0[0]))
            progress(p)
            line = ticker.beat(p)
            if line is not None:
                say(line)

        injector = fired = Injector(faults, cluster, record)

        def started(at: float) -> None:
            t0[0] = at
            fired.start(at)

        say(f"[{scheduler}] running {len(schedule)} requests" +
            (f" with faults {', '.join(map(str, faults))}" if faults else ""))
        results = run_loadgen(_loadgen_config(spec, scheduler, cluster), schedule, beat, stop,
                              on_start=started, curve=getattr(cluster, "curve", None))
    finally:
        say(f"[{scheduler}] stopping the cluster")
        if injector is not None:
            injector.stop()  # before the teardown: no restart may race it
        collector.stop()  # before the teardown, which it would record as silences
        if journal is not None:
            journal.stop()
        host.stop()
        activation.withdraw(collector.address)  # its socket, if it never started to adopt it
        cluster.stop()
    end_time = datetime.now(UTC)
    interrupted = stop is not None and stop.is_set()
    write_requests_csv(run_dir / REQUESTS, results)
    collector.write(run_dir, results.t0_wall_s, results.ended_s)
    host.write(run_dir, results.t0_wall_s, results.ended_s)
    _write_manifest(run_dir, spec, scheduler, len(schedule), start_time, end_time, results, interrupted,
                    curve=cluster.keys is not None if isinstance(cluster, LocalCluster) else cluster.curve is not None)
    return RunOutcome(scheduler, run_dir, results, interrupted)


def run_simulated(spec: ExperimentSpec, scheduler: str, schedule: list[PlannedRequest], run_dir: Path,
                  say: Say, progress: Callable[[Progress], None], stop: threading.Event | None) -> RunOutcome:
    """One arm on the simulated engine (cli/experiment/simrun.py): the same files, marked simulated."""
    from cli.experiment.simrun import manifest_fields, run_sim_arm

    start = datetime.now(UTC)
    results, figures = run_sim_arm(spec, scheduler, schedule, run_dir, say)
    _write_manifest(run_dir, spec, scheduler, len(schedule), start, datetime.now(UTC), results, False,
                    extra=manifest_fields(figures))
    return RunOutcome(scheduler, run_dir, results)


def _local_cluster(spec: ExperimentSpec, scheduler: str, run_dir: Path) -> tuple[Collector, LocalCluster]:
    """The collector and a local cluster: on loopback, or with partition faults on a private network
    whose bridge address the collector binds (the nodes publish to it from their namespaces)."""
    network = Network.create([n for n, _ in spec.node_names()]) if needs_netns(spec.fault_plan) else None
    try:
        # Held listening from now on and adopted by the collector's thread: no port race.
        collector = Collector(activation.offer(activation.listen(network.host if network else "127.0.0.1")))
        return collector, LocalCluster(spec, scheduler, run_dir / "daemons", collector.address, network=network)
    except BaseException:
        if network is not None:  # not yet the cluster's, whose stop() would remove it
            with contextlib.suppress(NetnsError):  # the first error is the one to show
                network.close()
        raise


def _live_run(spec: ExperimentSpec, scheduler: str, cluster: LocalCluster | RemoteCluster) -> LiveRun:
    """What `schedctl watch` needs to find this arm's daemons (cli/watch/journal.py)."""
    coordinators = {k: v for k, v in (("coordinator", cluster.coordinator), ("standby", cluster.standby)) if v}
    keys = cluster.keys.directory if isinstance(cluster, LocalCluster) and cluster.keys else None
    slo = Slo(spec.slo.ttft_ms, spec.slo.tpot_ms, spec.slo.e2el_ms)
    return LiveRun(os.getpid(), scheduler, spec.name, slo, coordinators, dict(cluster.node_endpoints),
                   None if keys is None else str(keys))


def _loadgen_config(spec: ExperimentSpec, scheduler: str, cluster: LocalCluster | RemoteCluster) -> LoadgenConfig:
    common: dict[str, Any] = {"timeout_s": spec.timeout_s, "name": f"loadgen-{spec.name}",
                              "retries": spec.retries, "attempt_timeout_s": spec.attempt_timeout_s}
    if scheduler == "centralized":
        return LoadgenConfig(mode="centralized", coordinator=cluster.coordinator,
                             standby=cluster.standby, **common)
    # Hybrid: requests enter at the peers, as in gossip; the peers refer cold starts to the coordinator.
    return LoadgenConfig(mode="gossip", entry=tuple(cluster.node_endpoints.values()), **common)


def _write_manifest(run_dir: Path, spec: ExperimentSpec, scheduler: str, planned: int,
                    start: datetime, end: datetime, results: Results, interrupted: bool,
                    curve: bool = False, extra: dict[str, Any] | None = None) -> None:
    manifest = {
        "name": spec.name, "scheduler": scheduler,
        "policy": POLICY_OF[scheduler](spec),
        "start_time": start.isoformat(), "end_time": end.isoformat(),
        "duration_s": spec.workload.duration_s, "seed": spec.workload.seed,
        "slo": {"ttft_ms": spec.slo.ttft_ms, "tpot_ms": spec.slo.tpot_ms, "e2el_ms": spec.slo.e2el_ms},
        "planned_requests": planned, "t0_wall_s": results.t0_wall_s,
        # Stopped early (Ctrl-C, SIGTERM): requests never sent are recorded `not_sent`.
        "interrupted": interrupted,
        "ignored_replies": results.ignored,
        "curve": curve,  # CURVE + ZAP on every socket (keys per run: never in the results directory)
        "spec": spec.to_dict(), "versions": versions(), "git_revision": git_revision(),
        "engine": "real", **(extra or {}),
    }
    write_manifest(run_dir / MANIFEST, manifest)


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("schedctl", "pyzmq", "msgpack", "huggingface_hub", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
