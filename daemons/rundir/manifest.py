"""manifest.json: what was run, so any run can be repeated and reported.

Written by `schedctl experiment run` (cli/experiment/runner.py builds the document):
{"name", "scheduler", "policy", "start_time", "end_time", "duration_s", "seed",
"slo": {"ttft_ms", "tpot_ms", "e2el_ms"}, "planned_requests", "t0_wall_s", "interrupted",
"ignored_replies", "curve", "spec", "versions", "git_revision"}. Readers need only `name`
and `scheduler`; the rest may be missing (null) in older or hand-made files, and `raw`
keeps the whole document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemons.core.errors import ConfigError
from daemons.rundir.cells import FIX

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Slo:
    """Service-level objectives in milliseconds; None means "not part of goodput"."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2el_ms: float | None = None

    def overridden_by(self, other: Slo) -> Slo:
        """This SLO with every value that `other` sets replaced (command-line flags win)."""
        return Slo(
            ttft_ms=self.ttft_ms if other.ttft_ms is None else other.ttft_ms,
            tpot_ms=self.tpot_ms if other.tpot_ms is None else other.tpot_ms,
            e2el_ms=self.e2el_ms if other.e2el_ms is None else other.e2el_ms,
        )

    @property
    def configured(self) -> bool:
        return any(v is not None for v in (self.ttft_ms, self.tpot_ms, self.e2el_ms))


@dataclass(frozen=True)
class Manifest:
    """The fields of manifest.json the report uses; `raw` keeps the whole document."""

    name: str
    scheduler: str
    policy: str
    start_time: str
    end_time: str
    duration_s: float | None
    planned_requests: int | None
    slo: Slo
    raw: dict[str, Any]


def write_manifest(path: str | Path, doc: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def read_manifest(path: Path) -> Manifest:
    doc = _json_object(path)
    for key in ("name", "scheduler"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ConfigError(f"{path}: missing or empty {key!r}; {FIX}")
    slo = doc.get("slo") or {}
    if not isinstance(slo, dict):
        raise ConfigError(f"{path}: 'slo' must be an object with ttft_ms, tpot_ms, e2el_ms; {FIX}")
    return Manifest(
        name=doc["name"],
        scheduler=doc["scheduler"],
        policy=str(doc.get("policy") or ""),
        start_time=str(doc.get("start_time") or ""),
        end_time=str(doc.get("end_time") or ""),
        duration_s=_json_number(doc.get("duration_s"), "duration_s", path),
        planned_requests=_json_int(doc.get("planned_requests"), path),
        slo=Slo(*(_json_number(slo.get(k), f"slo.{k}", path) for k in ("ttft_ms", "tpot_ms", "e2el_ms"))),
        raw=doc,
    )


def _json_object(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: missing; {FIX}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); {FIX}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top; {FIX}")
    return doc


def _json_number(value: object, key: str, path: Path) -> float | None:
    if value is None:
        return None
    # bool is an int in Python, and `true` is never a meaningful duration or SLO.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: {key!r} must be a number or null, got {value!r}; {FIX}")
    return float(value)


def _json_int(value: object, path: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{path}: 'planned_requests' must be a non-negative integer, got {value!r}; {FIX}")
    return value
