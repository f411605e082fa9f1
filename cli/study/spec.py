"""What a study is: arms × parameter points × repeats of one base experiment, and its hypotheses.

A study file is TOML (presets are the same tables, built in cli/study/presets.py):

    [study]
    name = "rps_sweep"
    description = "..."             # optional, shown in the report
    repeats = 3                     # seeds seed, seed+1, ...: every arm of a point replays each one
    seed = 1000
    metrics = ["cache_hit_rate", "p99_ttft", "goodput"]   # summary.csv columns (default: a standard set)
    experiment = "experiment.toml"  # optional base experiment file (relative to this file)
    sweep = "rps"                   # optional: the axis drawn as x in sweep curves

    [base]                          # experiment fields for every run (see FIELDS below)
    duration_s = 20
    nodes = 4

    [[arms]]                        # default: centralized and gossip
    name = "centralized"
    scheduler = "centralized"

    [[arms]]
    name = "gossip"
    scheduler = "gossip"

    [[arms]]                        # a third arm: peers place warm requests, the coordinator the rest
    name = "hybrid"
    scheduler = "hybrid"

    [vary]                          # the cartesian product of the axes: one point each
    rps = [2, 4]

    [[hypotheses]]
    text = "Centralized achieves a higher cache hit rate"
    metric = "cache_hit_rate"
    direction = "higher"            # arms[0]'s metric is higher (lower) than arms[1]'s
    arms = ["centralized", "gossip"]

    [quick]                         # optional: what --quick changes (fields, and `repeats`)
    duration_s = 5
    repeats = 2

A field is any experiment setting: the [experiment] keys of an experiment file (scheduler,
policy, gossip_policy, faults, standby_coordinator, timeout_s, queue_limit, ...), the
[workload] keys (duration_s, rps, cv, models, popularity, ...; not seed: the seeds are the
study's), `slo.ttft_ms`-style SLO keys,
`nodes` (a count: the base cluster's GPU mix, scaled as `experiment run --nodes`), and
`rps_per_node` (the offered load per node: the run's rps is this times its node count, so a
sweep over cluster sizes offers each size the same load per node; not with `rps`).
Every run's experiment is built (and so validated) when the study is loaded, before any
process starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cli.experiment.spec import ExperimentSpec, load_file, scaled_nodes
from cli.experiment.spec import from_dict as experiment_from_dict
from daemons.core.errors import ConfigError

Value = Any  # a TOML scalar, or a tuple of them
Settings = tuple[tuple[str, Value], ...]
DEFAULT_METRICS = ("cache_hit_rate", "success_rate", "goodput", "avg_ttft", "p99_ttft", "p50_latency",
                   "p99_latency", "p99_tpot")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STUDY_KEYS = {"name", "description", "repeats", "seed", "metrics", "experiment", "sweep"}
_TABLES = {"study", "base", "arms", "vary", "hypotheses", "quick"}
SLO_KEYS = ("slo.ttft_ms", "slo.tpot_ms", "slo.e2el_ms")
RPS_PER_NODE = "rps_per_node"
# Set by the study itself: every run's name and results directory are the study's.
_RESERVED = ("name", "results_dir", "cluster_file")


def fields() -> tuple[str, ...]:
    """Every experiment field a study may set or vary."""
    d = ExperimentSpec().to_dict()
    exp = [k for k in d["experiment"] if k not in _RESERVED and k != "slo"]
    return (*exp, *(k for k in d["workload"] if k != "seed"), *SLO_KEYS, "nodes", RPS_PER_NODE)  # seeds: the study's


@dataclass(frozen=True)
class Arm:
    name: str
    settings: Settings


@dataclass(frozen=True)
class Axis:
    field: str
    values: tuple[Value, ...]


@dataclass(frozen=True)
class Hypothesis:
    """"`arm`'s `metric` is `direction` than `other`'s", judged on paired differences."""

    text: str
    metric: str
    direction: Literal["higher", "lower"]
    arm: str
    other: str


@dataclass(frozen=True)
class Study:
    """A study, resolved: `--quick`, `--duration` and `--repeats` are already applied."""

    name: str
    arms: tuple[Arm, ...]
    base: Settings = ()
    vary: tuple[Axis, ...] = ()
    repeats: int = 3
    seed: int = 1000
    hypotheses: tuple[Hypothesis, ...] = ()
    metrics: tuple[str, ...] = DEFAULT_METRICS
    description: str = ""
    experiment_file: str = ""  # base experiment file, absolute
    sweep: str = ""  # an axis drawn as x in sweep curves

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.seed + k for k in range(self.repeats))

    def points(self) -> list[Settings]:
        """Every combination of the axes' values, in file order (one empty point without axes)."""
        combos = itertools.product(*(a.values for a in self.vary))
        return [tuple(zip((a.field for a in self.vary), combo, strict=True)) for combo in combos]

    def experiment(self, arm: Arm, point: Settings, seed: int) -> ExperimentSpec:
        """The experiment of one run: base file, then base, point and arm settings, then the seed."""
        spec = load_file(Path(self.experiment_file)) if self.experiment_file else ExperimentSpec()
        settings = (*self.base, *point, *arm.settings, ("seed", seed), ("name", f"{self.name}_{arm.name}"))
        return apply(spec, settings, f"study {self.name!r}, arm {arm.name!r}")

    def to_dict(self) -> dict[str, Any]:
        """The tables of a study file (written into study.json; `from_dict` reads them back)."""
        study: dict[str, Any] = {"name": self.name, "description": self.description, "repeats": self.repeats,
                                 "seed": self.seed, "metrics": list(self.metrics), "sweep": self.sweep}
        if self.experiment_file:
            study["experiment"] = self.experiment_file
        return {
            "study": study,
            "base": _plain(dict(self.base)),
            "arms": [{"name": a.name, **_plain(dict(a.settings))} for a in self.arms],
            "vary": {a.field: _plain(list(a.values)) for a in self.vary},
            "hypotheses": [{"text": h.text, "metric": h.metric, "direction": h.direction,
                            "arms": [h.arm, h.other]} for h in self.hypotheses],
        }


def apply(spec: ExperimentSpec, settings: Sequence[tuple[str, Value]], where: str) -> ExperimentSpec:
    """`spec` with every (field, value) set; the result is validated as an experiment file is."""
    d = spec.to_dict()
    exp, workload = d["experiment"], d["workload"]
    nodes: Value = None
    per_node: Value = None
    for key, value in settings:
        if key == "nodes":
            nodes = value
        elif key == RPS_PER_NODE:
            per_node = value
        elif key in SLO_KEYS:
            exp["slo"][key.split(".", 1)[1]] = value
        elif key in exp and key != "slo":
            exp[key] = list(value) if isinstance(value, tuple) else value
        elif key in workload:
            workload[key] = list(value) if isinstance(value, tuple) else value
        else:
            raise ConfigError(f"{where}: unknown experiment field {key!r}; use one of {', '.join(fields())}")
    if nodes is not None and (not isinstance(nodes, int) or isinstance(nodes, bool)):
        raise ConfigError(f"{where}: nodes must be a whole number of nodes, got {nodes!r}")
    if per_node is not None:
        workload["rps"] = _per_node_rps(d, per_node, nodes, settings, where)
    built = experiment_from_dict(d, where)
    if nodes is None:
        return built
    return dataclasses.replace(built, nodes=scaled_nodes(built.nodes, nodes))


def _per_node_rps(d: dict[str, Any], per_node: Value, nodes: int | None, settings: Sequence[tuple[str, Value]],
                  where: str) -> float:
    """`rps_per_node` × the run's node count: its `nodes`, else the base cluster's."""
    if any(key == "rps" for key, _ in settings):
        raise ConfigError(f"{where}: rps and rps_per_node both set the offered load; keep one")
    if isinstance(per_node, bool) or not isinstance(per_node, int | float) or not per_node > 0:
        raise ConfigError(f"{where}: rps_per_node must be a number of requests per second > 0, got {per_node!r}")
    count = nodes if nodes is not None else experiment_from_dict(d, where).node_count
    return float(per_node) * count


def from_dict(data: Mapping[str, Any], where: str, quick: bool = False, duration: float | None = None,
              repeats: int | None = None) -> Study:
    """A study from the tables of a study file; every run's experiment is built to check it."""
    unknown = sorted(set(data) - _TABLES)
    if unknown:
        raise ConfigError(f"{where}: unknown table(s) {unknown}; use {', '.join(sorted(_TABLES))}")
    head = _table(data, "study", where)
    bad = sorted(set(head) - _STUDY_KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown [study] key(s) {bad}; use {', '.join(sorted(_STUDY_KEYS))}")
    base = dict(_table(data, "base", where))
    quick_table = dict(_table(data, "quick", where))
    if quick:
        if not quick_table:
            raise ConfigError(f"{where}: --quick needs a [quick] table saying what to shrink "
                              "(e.g. duration_s = 5, repeats = 2); add one or drop --quick")
        repeats = repeats if repeats is not None else quick_table.pop("repeats", None)
        quick_table.pop("repeats", None)
        base.update(quick_table)
    if duration is not None:
        base["duration_s"] = duration
    study = Study(
        name=_name(head.get("name", ""), where, "[study] name"),
        description=str(head.get("description", "")),
        arms=_arms(data.get("arms"), where),
        base=_settings(base),
        vary=_axes(_table(data, "vary", where), where),
        repeats=_repeats(head.get("repeats", 3) if repeats is None else repeats, where),
        seed=_int(head.get("seed", 1000), where, "[study] seed"),
        hypotheses=(),
        metrics=tuple(head.get("metrics", DEFAULT_METRICS)),
        experiment_file=str(head.get("experiment", "")),
        sweep=str(head.get("sweep", "")),
    )
    study = dataclasses.replace(study, hypotheses=_hypotheses(data.get("hypotheses", []), study, where))
    return check(study, where)


def check(study: Study, where: str) -> Study:
    """Build every run's experiment once, so a bad field or value fails before anything runs."""
    if study.sweep and study.sweep not in {a.field for a in study.vary}:
        raise ConfigError(f"{where}: sweep = {study.sweep!r} is not a [vary] axis; name one of "
                          f"{[a.field for a in study.vary] or 'the axes (there are none)'}")
    if not study.metrics or not all(isinstance(m, str) and m for m in study.metrics):
        raise ConfigError(f"{where}: [study] metrics must be a non-empty list of summary.csv column names")
    for arm in study.arms:
        for point in study.points():
            spec = study.experiment(arm, point, study.seed)
            if len(spec.schedulers) != 1:
                raise ConfigError(f"{where}: arm {arm.name!r} runs {' and '.join(spec.schedulers)}; an arm is one "
                                  "scheduler: set scheduler = \"centralized\", \"gossip\" or \"hybrid\" in the arm")
    return study


def load(path: Path, quick: bool = False, duration: float | None = None, repeats: int | None = None) -> Study:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"study file {path} not found: pass a preset name or the path of a study file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read study file {path} ({exc}): check the path") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"study file {path} is not valid TOML ({exc}): fix the syntax") from None
    head = data.get("study")
    if isinstance(head, dict) and isinstance(head.get("experiment"), str) and head["experiment"]:
        head["experiment"] = str((path.parent / head["experiment"]).resolve())
    return from_dict(data, str(path), quick, duration, repeats)


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: [{key}] must be a table")
    return value


def _name(value: object, where: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError(f"{where}: {what} {value!r} must be letters, digits, '_', '-' or '.', without spaces")
    return value


def _int(value: object, where: str, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{where}: {what} must be a whole number, got {value!r}")
    return value


def _repeats(value: object, where: str) -> int:
    n = _int(value, where, "repeats")
    if n < 1:
        raise ConfigError(f"{where}: repeats must be at least 1 (--repeats N, N >= 1), got {n}")
    return n


def _frozen(value: Value) -> Value:
    return tuple(_frozen(v) for v in value) if isinstance(value, list | tuple) else value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, list | tuple) else value


def _settings(table: Mapping[str, Any]) -> Settings:
    return tuple((k, _frozen(v)) for k, v in table.items())


def _arms(value: object, where: str) -> tuple[Arm, ...]:
    if value is None:
        return (Arm("centralized", (("scheduler", "centralized"),)), Arm("gossip", (("scheduler", "gossip"),)))
    if not isinstance(value, list) or not value or not all(isinstance(a, dict) for a in value):
        raise ConfigError(f"{where}: arms must be one or more [[arms]] tables, each with a name")
    arms = []
    for table in value:
        rest = dict(table)
        arms.append(Arm(_name(rest.pop("name", ""), where, "[[arms]] name"), _settings(rest)))
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: arm names {names} repeat; give every [[arms]] its own name")
    return tuple(arms)


def _axes(table: Mapping[str, Any], where: str) -> tuple[Axis, ...]:
    known = fields()
    axes = []
    for key, values in table.items():
        if key not in known:
            raise ConfigError(f"{where}: [vary] {key!r} is not an experiment field; use one of {', '.join(known)}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}: [vary] {key} is an empty axis; give it a list of one or more values, "
                              f"e.g. {key} = [...]")
        axes.append(Axis(key, tuple(_frozen(v) for v in values)))
    return tuple(axes)


def _hypotheses(value: object, study: Study, where: str) -> tuple[Hypothesis, ...]:
    if not isinstance(value, list) or not all(isinstance(h, dict) for h in value):
        raise ConfigError(f"{where}: hypotheses must be [[hypotheses]] tables (text, metric, direction, arms)")
    arm_names = [a.name for a in study.arms]
    out = []
    for h in value:
        arms = h.get("arms", arm_names[:2])
        direction = h.get("direction")
        if direction not in ("higher", "lower"):
            raise ConfigError(f"{where}: hypothesis direction {direction!r} must be \"higher\" or \"lower\"")
        if not (isinstance(arms, list) and len(arms) == 2 and all(a in arm_names for a in arms) and arms[0] != arms[1]):
            raise ConfigError(f"{where}: hypothesis arms {arms!r} must name two different arms of {arm_names}")
        metric = h.get("metric")
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"{where}: every hypothesis needs a metric (a summary.csv column, e.g. cache_hit_rate)")
        text = str(h.get("text") or f"{arms[0]} has a {direction} {metric} than {arms[1]}")
        out.append(Hypothesis(text, metric, direction, arms[0], arms[1]))
    return tuple(out)
