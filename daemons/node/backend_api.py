"""What the node asks of a backend instance, whatever serves it: the stream items, the load
figures, the one error type, and the `InstanceBackend` protocol.

Two kinds implement it: `backend.Backend` (TGI's HTTP protocol through huggingface_hub: real
TGI, or the emulator as a process) and `inproc.InprocBackend` (the emulator's engine inside
the node's own process). This module imports neither, so a node that serves in-process never
loads the HTTP client stack.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from daemons.core.errors import BackendError

__all__ = ["BackendRequestError", "Finished", "InstanceBackend", "Load", "Token"]


class BackendRequestError(BackendError):
    """A request failed at the backend; `code` is what the node reports on the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Token:
    text: str
    index: int


@dataclass(frozen=True, slots=True)
class Finished:
    generated_tokens: int
    finish_reason: str


@dataclass(frozen=True, slots=True)
class Load:
    queue_size: int
    batch_size: int
    # The emulator's `schedctl_emulator_busy_ratio` (fraction of the last second its engine spent
    # in steps: the emulated GPU's compute utilisation); None from real TGI, which has no such series.
    busy_ratio: float | None = None


class InstanceBackend(Protocol):
    """One backend instance as the node's model manager and request path use it."""

    open_streams: int  # streams not yet ended (0 when idle: nothing leaks)

    def stream(self, prompt: str, max_new_tokens: int) -> AsyncIterator[Token | Finished]:
        """Tokens, then one Finished; BackendRequestError on any failure. Closing the
        iterator early (`aclose()`, cancellation) releases the request at the backend."""
        ...

    async def healthy(self) -> bool: ...

    async def load(self) -> Load | None:
        """Queue and batch size now, or None if they cannot be read now."""
        ...

    async def close(self) -> None: ...
