"""study.json: what a study is, every run it plans, and where each one stands.

    {"study": {...the study's tables, as a study file writes them...},
     "created": "2026-12-04T18:00:00+00:00",
     "runs": [{"id": "p0_s1000_centralized", "arm": "centralized", "point": {"rps": 2.0},
               "point_index": 0, "repeat": 0, "seed": 1000,
               "status": "planned" | "done" | "failed" | "interrupted",
               "run_dir": "runs/performance_centralized_p0_s1000_centralized_20261204_180000",
               "wall_s": 41.2, "error": ""}, ...]}

`run_dir` is relative to the study directory, so a study directory can be moved. The file
is rewritten whole (write to a temporary file, then rename) after every change, so an
interrupted study leaves a readable ledger for `--resume`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli.study.spec import Settings, Study, from_dict
from daemons.core.errors import ConfigError

LEDGER = "study.json"
PLANNED, DONE, FAILED, INTERRUPTED = "planned", "done", "failed", "interrupted"
MISSING = "missing"  # done, but its directory is gone (shown by the report, never stored)


@dataclass(frozen=True)
class RunEntry:
    id: str
    arm: str
    point: dict[str, Any]
    point_index: int
    repeat: int
    seed: int
    status: str = PLANNED
    run_dir: str = ""
    wall_s: float = 0.0
    error: str = ""


def point_label(point: Settings | dict[str, Any]) -> str:
    items = point.items() if isinstance(point, dict) else point
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in items) or "-"


def plan(study: Study) -> list[RunEntry]:
    """Every run: per point, per seed, every arm (the arms of one seed replay one schedule: paired)."""
    runs = []
    for index, point in enumerate(study.points()):
        for repeat, seed in enumerate(study.seeds):
            for arm in study.arms:
                runs.append(RunEntry(f"p{index}_s{seed}_{arm.name}", arm.name, dict(point), index, repeat, seed))
    return runs


@dataclass
class Ledger:
    """The study directory's study.json, in memory."""

    study_dir: Path
    study: Study
    runs: list[RunEntry]
    created: str

    @classmethod
    def new(cls, study_dir: Path, study: Study) -> Ledger:
        ledger = cls(study_dir, study, plan(study), datetime.now(UTC).isoformat(timespec="seconds"))
        ledger.save()
        return ledger

    @classmethod
    def load(cls, study_dir: Path) -> Ledger:
        path = study_dir / LEDGER
        fix = "pass a study directory written by `schedctl study run` (studies/<name>_<time>/)"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path} not found: {fix}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {path} ({exc}): {fix}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("study"), dict) or not isinstance(doc.get("runs"), list):
            raise ConfigError(f"{path} is not a study ledger (no 'study' and 'runs'): {fix}")
        study = from_dict(doc["study"], str(path))
        try:
            stored = {r["id"]: RunEntry(**r) for r in doc["runs"]}
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"{path}: a run entry cannot be read ({exc}): {fix}") from None
        # The plan is the study's; stored entries carry each run's status and directory.
        runs = [stored.get(r.id, r) for r in plan(study)]
        return cls(study_dir, study, runs, str(doc.get("created", "")))

    def update(self, entry: RunEntry, **changes: Any) -> RunEntry:
        new = replace(entry, **changes)
        self.runs = [new if r.id == entry.id else r for r in self.runs]
        self.save()
        return new

    def finished(self, entry: RunEntry) -> bool:
        return entry.status == DONE and bool(entry.run_dir) and (self.study_dir / entry.run_dir).is_dir()

    def save(self) -> None:
        doc = {"study": self.study.to_dict(), "created": self.created, "runs": [asdict(r) for r in self.runs]}
        path = self.study_dir / LEDGER
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
