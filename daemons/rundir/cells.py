"""CSV cells of the results directory: writing typed values, reading them back with file:line errors.

Every file of the directory follows the same cell rules, so they live here once:

- an empty cell means "did not happen" or "not measured": None or NaN on the Python side;
- a list is `;`-joined, a mapping is compact JSON with sorted keys (empty mapping: empty cell);
- a float is written with the file's own format: requests.csv keeps the microsecond
  (`.6f`, as it always had), the other files write the shortest text that reads back
  the same float (`repr`);
- a bool is 1 or 0.

Reading is strict where a number is expected (a cell that is not one is a ConfigError naming
the file, the line and the fix) and lenient about columns: a file needs only its required
columns, and columns it does not know are ignored, so older and newer files both read.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemons.core.errors import ConfigError

FIX = "it should be written by `schedctl experiment run`; re-run the experiment or repair the file"
NAN = math.nan

FloatFormat = Callable[[float], str]


def micro(value: float) -> str:
    """Seconds to the microsecond (requests.csv)."""
    return f"{value:.6f}"


def exact(value: float) -> str:
    """The shortest text that reads back as the same float."""
    return repr(value)


def cell(value: object, float_format: FloatFormat = exact) -> object:
    """One value as a CSV cell: None and NaN empty, see the module docstring for the rest."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else float_format(value)
    if isinstance(value, list | tuple):
        return ";".join(map(str, value))
    if isinstance(value, Mapping):
        return json.dumps(dict(value), separators=(",", ":"), sort_keys=True) if value else ""
    return value


KEYWORD_ATTRS = {"class": "klass"}


def write_rows(path: str | Path, columns: Sequence[str], rows: Iterable[object],
               float_format: FloatFormat = exact) -> None:
    """A header, then one line per row: each column is the row's attribute of that name
    (a Python keyword, such as `class`, is the attribute `k`-spelled: `klass`)."""
    attrs = [KEYWORD_ATTRS.get(name, name) for name in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([cell(getattr(row, name), float_format) for name in attrs] for row in rows)


@dataclass(frozen=True)
class Row:
    """One line of a CSV file being read, with typed accessors that fail as `file:line`."""

    cells: dict[str, str]
    path: Path
    line: int

    def fail(self, column: str, value: str, want: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.line}: column {column!r} must be {want}, got {value!r}; {FIX}")

    def text(self, column: str) -> str:
        return (self.cells.get(column) or "").strip()

    def number(self, column: str, *, required: bool = False) -> float:
        """The cell as a finite float; NaN when empty (an error when `required`)."""
        text = self.text(column)
        if not text:
            if required:
                raise self.fail(column, text, "a number")
            return NAN
        try:
            value = float(text)
        except ValueError:
            raise self.fail(column, text, "a number") from None
        if math.isinf(value):
            raise self.fail(column, text, "a finite number")
        return value

    def count(self, column: str) -> int | None:
        """The cell as a non-negative integer; None when empty."""
        value = self.number(column)
        if math.isnan(value):
            return None
        if value != int(value) or value < 0:
            raise self.fail(column, self.text(column), "a non-negative integer")
        return int(value)

    def flag(self, column: str, default: bool) -> bool:
        text = self.text(column).lower()
        if not text:
            return default
        if text not in ("1", "0", "true", "false"):
            raise self.fail(column, text, "1 or 0")
        return text in ("1", "true")

    def items(self, column: str) -> tuple[str, ...]:
        """A `;`-joined list; empty parts dropped."""
        return tuple(part for part in self.text(column).split(";") if part)

    def mapping(self, column: str) -> dict[str, float]:
        """A JSON object of numbers; empty cell: {}."""
        text = self.text(column)
        if not text:
            return {}
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            raise self.fail(column, text, "a JSON object") from None
        if not isinstance(doc, dict) or not all(isinstance(v, int | float) for v in doc.values()):
            raise self.fail(column, text, "a JSON object of numbers")
        return {str(k): float(v) for k, v in doc.items()}


def read_rows(path: Path, required: Sequence[str]) -> Iterator[Row]:
    """The rows of a CSV file whose header holds at least `required` (in that order when named)."""
    if not path.is_file():
        raise ConfigError(f"{path}: missing; {FIX}")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lstrip("\ufeff") for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(f"{path}: header lacks column(s) {', '.join(missing)}; {FIX}")
        for cells in reader:
            if None in cells:  # DictReader files surplus cells under the key None
                raise ConfigError(f"{path}:{reader.line_num}: more cells than header columns; {FIX}")
            yield Row(cells, path, reader.line_num)
