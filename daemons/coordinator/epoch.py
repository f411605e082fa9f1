"""The coordinator's epoch on disk: written with fsync before the first answer in it.

An epoch that a crash could roll back would let a restarted coordinator take an epoch it
already used, and nodes could no longer tell its old placements from its new ones. So the
file is replaced atomically (write a temporary file, fsync it, rename, fsync the folder).
"""

from __future__ import annotations

import os
from pathlib import Path

from daemons.core.errors import ConfigError


class EpochStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int:
        """The stored epoch; 0 when none was ever written."""
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise ConfigError(f"cannot read the epoch file {self.path}: {exc.strerror}: fix its permissions "
                              "or pass --epoch-file with a writable path") from None
        if not text.isdigit():
            raise ConfigError(f"the epoch file {self.path} holds {text[:40]!r}, not an epoch number: "
                              "restore it, or delete it only if this coordinator's peer is stopped")
        return int(text)

    def write(self, epoch: int) -> None:
        """Persist `epoch` durably (the caller answers nothing in it before this returns)."""
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{epoch}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
