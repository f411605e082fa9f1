"""The schedule file: one row per planned request, so both schedulers replay the same list.

Columns (header required, in any order): `request_id, t_s, model, prompt_tokens,
max_new_tokens`, where `t_s` is the send time in seconds from the run's start. Times are
written with `repr`, so reading a written file gives back exactly the same floats.
A workload with classes adds `class, slo_ttft_ms, slo_tpot_ms` (CLASS_COLUMNS; optional
when reading: a file without them is a workload without classes).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from daemons.core.errors import ConfigError
from daemons.loadgen.distributions import MAX_TOKENS
from daemons.loadgen.workload import PlannedRequest
from daemons.policy.priority import CLASS_PRIORITY

COLUMNS = ("request_id", "t_s", "model", "prompt_tokens", "max_new_tokens")
CLASS_COLUMNS = ("class", "slo_ttft_ms", "slo_tpot_ms")
REGENERATE = "regenerate it with `schedctl loadgen plan`"


def write_schedule_csv(path: str | Path, requests: Iterable[PlannedRequest]) -> int:
    """Write the schedule; returns the number of rows written."""
    rows = list(requests)
    classed = any(r.klass for r in rows)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS + CLASS_COLUMNS if classed else COLUMNS)
        for r in rows:
            row: tuple[object, ...] = (r.request_id, repr(r.t_s), r.model, r.prompt_tokens, r.max_new_tokens)
            writer.writerow((*row, r.klass, repr(r.slo_ttft_ms), repr(r.slo_tpot_ms)) if classed else row)
    return len(rows)


def read_schedule_csv(path: str | Path) -> list[PlannedRequest]:
    """Read a schedule, sorted by time; any bad row is a ConfigError naming file and line."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            requests = _read(fh, name)
    except FileNotFoundError:
        raise ConfigError(f"schedule file {name} not found; "
                          f"create one with `schedctl loadgen plan -o {name}`") from None
    except UnicodeDecodeError:
        raise ConfigError(f"schedule file {name} is not UTF-8 text; {REGENERATE}") from None
    except OSError as exc:
        raise ConfigError(f"schedule file {name}: {exc.strerror}; check the path and permissions") from None
    # Hand-edited files may be out of order; the sender needs time order (stable: ties keep file order).
    requests.sort(key=lambda r: r.t_s)
    return requests


def _read(fh: TextIO, name: str) -> list[PlannedRequest]:
    reader = csv.reader(fh)
    header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{name} line 1: missing column(s) {', '.join(missing)}; the header must be "
                          f"{','.join(COLUMNS)}; {REGENERATE}")
    index = [header.index(c) for c in COLUMNS] + [header.index(c) for c in CLASS_COLUMNS if c in header]
    seen: set[str] = set()
    out: list[PlannedRequest] = []
    for row in reader:
        if not row or not any(cell.strip() for cell in row):
            continue
        request = _row(row, index, len(header), name, reader.line_num)
        if request.request_id in seen:
            raise ConfigError(f"{name} line {reader.line_num}: request_id {request.request_id!r} "
                              "appears twice; request ids must be unique")
        seen.add(request.request_id)
        out.append(request)
    if not out:
        raise ConfigError(f"{name}: no requests after the header; {REGENERATE}")
    return out


def _row(row: list[str], index: list[int], width: int, name: str, line: int) -> PlannedRequest:
    where = f"{name} line {line}"
    if len(row) != width:
        raise ConfigError(f"{where}: {len(row)} fields, the header has {width}; fix that row or {REGENERATE}")
    rid, t, model, prompt, output, *classed = (row[i].strip() for i in index)
    if not rid or any(c.isspace() for c in rid):
        raise ConfigError(f"{where}: request_id {rid!r} must be non-empty without spaces; fix that cell")
    if not model:
        raise ConfigError(f"{where}: model is empty; put the model name in that cell")
    try:
        t_s = float(t)
    except ValueError:
        raise ConfigError(f"{where}: t_s {t[:40]!r} is not a number of seconds; fix that cell") from None
    if not (math.isfinite(t_s) and t_s >= 0):
        raise ConfigError(f"{where}: t_s {t!r} must be a finite number of seconds >= 0; fix that cell")
    return PlannedRequest(rid, t_s, model, _count(prompt, "prompt_tokens", where),
                          _count(output, "max_new_tokens", where), *_class(classed, where))


def _class(cells: list[str], where: str) -> tuple[str, float, float]:
    """The class columns of a row: ("", 0, 0) when the file has none or the cell is empty."""
    if not cells or not cells[0]:
        return ("", 0.0, 0.0)
    name = cells[0]
    if name not in CLASS_PRIORITY:
        raise ConfigError(f"{where}: class {name!r} is unknown; use one of {', '.join(CLASS_PRIORITY)}")
    slos = []
    for column, cell in zip(CLASS_COLUMNS[1:], cells[1:], strict=False):
        try:
            value = float(cell or 0)
        except ValueError:
            raise ConfigError(f"{where}: {column} {cell[:40]!r} is not a number of ms; fix that cell") from None
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{where}: {column} {cell!r} must be >= 0 ms (0 = none); fix that cell")
        slos.append(value)
    slos += [0.0] * (2 - len(slos))
    return (name, slos[0], slos[1])


def _count(cell: str, column: str, where: str) -> int:
    try:
        value = int(cell)
    except ValueError:
        raise ConfigError(f"{where}: {column} {cell[:40]!r} is not a whole number; fix that cell") from None
    if not 1 <= value <= MAX_TOKENS:
        raise ConfigError(f"{where}: {column} {value} must be in 1..{MAX_TOKENS}; fix that cell")
    return value
