"""Write docs/configuration.md from the config dataclasses (`--check`: exit 1 if it is out of date)."""

from __future__ import annotations

import sys
from pathlib import Path

from cli.config_reference import OUTPUT, render

if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / OUTPUT
    text = render()
    if "--check" in sys.argv[1:]:
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            sys.exit(f"{OUTPUT} is out of date: run `python scripts/config_reference.py`")
        sys.exit(0)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
