"""Reading request traces: the Azure LLM inference trace format (Azure LLM inference trace 2023).

Accepted headers (first line, any column order, names case-insensitive):
- Azure LLM 2023/2024: `TIMESTAMP, ContextTokens, GeneratedTokens`, where TIMESTAMP is a
  datetime such as `2023-11-16 18:15:46.6805900` (optionally with a UTC offset) or a
  number of seconds;
- Vidur's processed copies: `arrived_at, num_prefill_tokens, num_decode_tokens` (seconds).

Times are made relative to the first row. Rows must be in time order, as the published
traces are: that lets a replay of the first minutes of a week-long file stop reading early.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from daemons.core.errors import ConfigError

COLUMN_SETS: tuple[tuple[str, str, str], ...] = (
    ("timestamp", "contexttokens", "generatedtokens"),
    ("arrived_at", "num_prefill_tokens", "num_decode_tokens"),
)
HEADER_HINT = "TIMESTAMP,ContextTokens,GeneratedTokens (Azure LLM inference trace)"
# Python 3.11's fromisoformat reads at most 6 fractional digits; Azure writes 7.
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True, slots=True)
class Trace:
    """A trace's rows as arrays: offsets from the first row (s), prompt and output tokens."""

    path: str
    t_s: npt.NDArray[np.float64]
    context_tokens: npt.NDArray[np.int64]
    generated_tokens: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.t_s)


def read_trace(path: str | Path, until_s: float = float("inf")) -> Trace:
    """Read a trace file; rows later than `until_s` after the first are not read."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return _read(fh, name, until_s)
    except FileNotFoundError:
        raise ConfigError(f"trace file {name} not found; give the path of an Azure-format CSV") from None
    except UnicodeDecodeError:
        raise ConfigError(f"trace file {name} is not UTF-8 text; give an Azure-format CSV") from None
    except OSError as exc:
        raise ConfigError(f"trace file {name}: {exc.strerror}; check the path and permissions") from None


def _read(fh: TextIO, name: str, until_s: float) -> Trace:
    reader = csv.reader(fh)
    header = next(reader, None)
    if header is None:
        raise ConfigError(f"{name}: the file is empty; expected a header {HEADER_HINT}")
    cols = _columns(header, name)
    times: list[float] = []
    ctx: list[int] = []
    gen: list[int] = []
    origin: datetime | float | None = None
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise ConfigError(f"{name} line {line}: {len(row)} fields, the header has {len(header)}; "
                              "fix or delete that row")
        stamp = _timestamp(row[cols[0]].strip(), name, line)
        if origin is None:
            origin = stamp
        offset = _offset(stamp, origin, name, line)
        if times and offset < times[-1]:
            raise ConfigError(f"{name} line {line}: time goes backwards; "
                              "sort the file by its timestamp column")
        if offset > until_s:
            break
        times.append(offset)
        ctx.append(_tokens(row[cols[1]], header[cols[1]], name, line))
        gen.append(_tokens(row[cols[2]], header[cols[2]], name, line))
    if not times:
        raise ConfigError(f"{name}: no data rows after the header; the trace needs at least one request")
    return Trace(name, np.asarray(times, dtype=np.float64), np.asarray(ctx, dtype=np.int64),
                 np.asarray(gen, dtype=np.int64))


def _columns(header: list[str], name: str) -> tuple[int, int, int]:
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    for wanted in COLUMN_SETS:
        if all(w in names for w in wanted):
            return names.index(wanted[0]), names.index(wanted[1]), names.index(wanted[2])
    raise ConfigError(f"{name} line 1: header {','.join(header)[:80]!r} lacks the trace columns; "
                      f"expected {HEADER_HINT}")


def _timestamp(cell: str, name: str, line: int) -> datetime | float:
    try:
        return float(cell)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", cell))
    except ValueError:
        raise ConfigError(f"{name} line {line}: timestamp {cell[:40]!r} is neither seconds nor a datetime "
                          "like 2023-11-16 18:15:46.6805900; fix that cell") from None


def _offset(stamp: datetime | float, origin: datetime | float, name: str, line: int) -> float:
    if isinstance(stamp, float) and isinstance(origin, float):
        return stamp - origin
    if isinstance(stamp, datetime) and isinstance(origin, datetime):
        try:
            return (stamp - origin).total_seconds()
        except TypeError:
            pass  # one has a UTC offset and the other not
    raise ConfigError(f"{name} line {line}: timestamps mix formats; use one format in the whole column")


def _tokens(cell: str, column: str, name: str, line: int) -> int:
    try:
        value = int(float(cell))
    except (ValueError, OverflowError):
        raise ConfigError(f"{name} line {line}: {column} {cell[:40]!r} is not a token count; "
                          "fix that cell") from None
    if value < 0:
        raise ConfigError(f"{name} line {line}: {column} is negative ({value}); fix that cell")
    return value
