"""Workload classes: interactive vs batch traffic, each with its share, lengths and SLOs.

A workload without classes is one anonymous class (priority 0, the run's SLO), exactly as
before classes existed. With classes, every planned request draws its class by share
and carries its name, its priority (daemons/policy/priority.py: interactive 2, standard 1,
batch 0) and its class SLOs (TTFT and TPOT in ms; 0 = none).

In an experiment file:

    [[workload.classes]]
    name = "interactive"
    share = 0.3
    ttft_ms = 500            # optional: the class's TTFT SLO
    tpot_ms = 50             # optional: the class's TPOT SLO
    prompt_tokens = "uniform:64-256"   # optional: else the workload's prompt_tokens
    output_tokens = "uniform:16-64"    # optional: else the workload's output_tokens

    [[workload.classes]]
    name = "batch"
    share = 0.7

On the command line (`--classes`), lengths come from the workload's flags:

    --classes interactive:0.3:ttft=500:tpot=50,batch:0.7
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemons.core.errors import ConfigError
from daemons.loadgen.distributions import LengthDist, parse_length
from daemons.policy.priority import CLASS_PRIORITY, class_priority

CLASSES_SYNTAX = "NAME:SHARE[:ttft=MS][:tpot=MS],... e.g. interactive:0.3:ttft=500,batch:0.7"
SHARE_TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """One class of traffic: what share of requests it gets, their lengths and SLOs."""

    name: str
    share: float
    ttft_ms: float = 0.0  # the class's TTFT SLO; 0 = none (the run's SLO applies)
    tpot_ms: float = 0.0  # the class's TPOT SLO; 0 = none
    prompt_tokens: LengthDist | None = None  # None: the workload's
    output_tokens: LengthDist | None = None  # None: the workload's

    def __post_init__(self) -> None:
        class_priority(self.name)
        if not (math.isfinite(self.share) and 0 < self.share <= 1):
            raise ConfigError(f"class {self.name}: share {self.share!r} must be in (0, 1]")
        for what, value in (("ttft", self.ttft_ms), ("tpot", self.tpot_ms)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"class {self.name}: {what} SLO {value!r} ms must be >= 0; write {what}=MS "
                                  "with MS >= 0 (0 = no SLO of its own)")

    @property
    def priority(self) -> int:
        return CLASS_PRIORITY[self.name]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "share": self.share}
        if self.ttft_ms:
            out["ttft_ms"] = self.ttft_ms
        if self.tpot_ms:
            out["tpot_ms"] = self.tpot_ms
        for key, dist in (("prompt_tokens", self.prompt_tokens), ("output_tokens", self.output_tokens)):
            if dist is not None:
                out[key] = dist.describe()
        return out


def check_classes(classes: Sequence[WorkloadClass]) -> None:
    """Each class once, shares adding up to 1: one ConfigError naming the fix otherwise."""
    if not classes:
        return
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise ConfigError(f"classes: a class is listed twice ({', '.join(names)}); list each once")
    total = sum(c.share for c in classes)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        listed = ", ".join(f"{c.name} {c.share:g}" for c in classes)
        raise ConfigError(f"classes: shares add up to {total:g}, not 1 ({listed}); adjust them so they sum to 1")


def parse_classes(value: object, where: str = "classes") -> tuple[WorkloadClass, ...]:
    """Classes from the flag's text, or from a TOML list of tables; checked together."""
    if isinstance(value, str):
        classes = tuple(_from_text(part.strip(), where) for part in value.split(",") if part.strip())
        if not classes:
            raise ConfigError(f"{where}: no class given; write {CLASSES_SYNTAX}")
    elif isinstance(value, list | tuple):
        classes = tuple(c if isinstance(c, WorkloadClass) else _from_table(c, where) for c in value)
    else:
        raise ConfigError(f"{where}: expected {CLASSES_SYNTAX} or a list of [[workload.classes]] tables, "
                          f"got {value!r}")
    check_classes(classes)
    return classes


def _from_text(part: str, where: str) -> WorkloadClass:
    name, _, rest = part.partition(":")
    share_text, *options = rest.split(":") if rest else [""]
    class_priority(name)  # an unknown name first: the clearest error
    try:
        share = float(share_text)
    except ValueError:
        raise ConfigError(f"{where}: class {name} needs a share, got {share_text!r}; write {CLASSES_SYNTAX}") from None
    slos: dict[str, float] = {}
    for option in options:
        key, eq, number = option.partition("=")
        if key not in ("ttft", "tpot") or not eq:
            raise ConfigError(f"{where}: class {name}: {option!r} is not ttft=MS or tpot=MS; write {CLASSES_SYNTAX}")
        try:
            slos[f"{key}_ms"] = float(number)
        except ValueError:
            raise ConfigError(f"{where}: class {name}: {key} {number!r} is not a number of ms") from None
    return WorkloadClass(name, share, slos.get("ttft_ms", 0.0), slos.get("tpot_ms", 0.0))


_KEYS = ("name", "share", "ttft_ms", "tpot_ms", "prompt_tokens", "output_tokens")


def _from_table(table: object, where: str) -> WorkloadClass:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: each class is a table (name, share, ...), got {table!r}")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} in a class; valid keys: {', '.join(_KEYS)}")
    name = table.get("name")
    if not isinstance(name, str):
        raise ConfigError(f"{where}: a class needs name = one of {', '.join(CLASS_PRIORITY)}")
    numbers: dict[str, float] = {}
    for key in ("share", "ttft_ms", "tpot_ms"):
        if key in table:
            value = table[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}: class {name}: {key} must be a number, got {value!r}")
            numbers[key] = float(value)
    if "share" not in numbers:
        raise ConfigError(f"{where}: class {name} needs a share (its fraction of requests)")
    lengths = {key: parse_length(table[key], f"{where} {name} {key}")
               for key in ("prompt_tokens", "output_tokens") if key in table}
    return WorkloadClass(name, numbers["share"], numbers.get("ttft_ms", 0.0), numbers.get("tpot_ms", 0.0),
                         lengths.get("prompt_tokens"), lengths.get("output_tokens"))
