"""Talking TGI to one backend instance: streaming through huggingface_hub, probes over HTTP.

The same code drives the emulator on a laptop and text-generation-inference on a GPU.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from huggingface_hub import AsyncInferenceClient, set_async_client_factory
from huggingface_hub.errors import (
    GenerationError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)

# The httpx that the installed huggingface_hub uses (httpx in 1.x, httpx2 in 2.x), so the
# exception classes we catch are the ones its client raises.
from huggingface_hub.utils import httpx  # type: ignore[attr-defined]

from daemons.bus.errors import BackendError

__all__ = ["Backend", "BackendRequestError", "Finished", "Load", "Token", "httpx", "parse_gauges"]


def _unbounded_client() -> httpx.AsyncClient:
    # httpx's default pool of 100 connections would silently queue further streams
    # (REFERENCE.md §2.1); the node bounds concurrency itself, per request, with timeouts.
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=None), timeout=None)


set_async_client_factory(_unbounded_client)


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


BUSY_RATIO = "schedctl_emulator_busy_ratio"


@dataclass(frozen=True, slots=True)
class Load:
    queue_size: int
    batch_size: int
    busy_ratio: float = 0.0  # the emulator's `schedctl_emulator_busy_ratio`; TGI has none


class Backend:
    """One TGI-compatible server at `base_url`."""

    def __init__(self, base_url: str, probe_client: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self._client = AsyncInferenceClient(base_url=base_url)
        self._probe = probe_client

    async def stream(self, prompt: str, max_new_tokens: int) -> AsyncIterator[Token | Finished]:
        """Yield tokens, then one Finished; raise BackendRequestError on any failure."""
        try:
            events = await self._client.text_generation(
                prompt, max_new_tokens=max_new_tokens, stream=True, details=True)
            async for event in events:
                if event.details is not None:
                    details = event.details
                    yield Finished(int(details.generated_tokens), str(details.finish_reason))
                    return
                yield Token(event.token.text, int(event.index))
        except Exception as exc:
            raise _classify(exc) from exc
        raise BackendRequestError("incomplete_generation", "stream ended without its final event")

    async def healthy(self) -> bool:
        try:
            return (await self._probe.get(f"{self.base_url}/health", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def load(self) -> Load | None:
        """Queue and batch size from /metrics, or None if it cannot be read now."""
        try:
            response = await self._probe.get(f"{self.base_url}/metrics", timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        gauges = parse_gauges(response.text, ("tgi_queue_size", "tgi_batch_current_size", BUSY_RATIO))
        return Load(int(gauges.get("tgi_queue_size", 0)), int(gauges.get("tgi_batch_current_size", 0)),
                    gauges.get(BUSY_RATIO, 0.0))

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def parse_gauges(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Unlabelled sample values of `names` from Prometheus text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            try:
                out[name] = float(value.split()[0])
            except (ValueError, IndexError):
                continue
    return out


def _classify(exc: Exception) -> BackendRequestError:
    if isinstance(exc, BackendRequestError):
        return exc
    kinds: list[tuple[type[BaseException], str]] = [
        (OverloadedError, "overloaded"), (ValidationError, "validation"),
        (GenerationError, "generation"), (TextGenerationError, "backend_error"),
        (httpx.TimeoutException, "backend_timeout"), (httpx.ConnectError, "backend_unreachable"),
        (httpx.RemoteProtocolError, "backend_died"), (httpx.ReadError, "backend_died"),
    ]
    for kind, code in kinds:
        if isinstance(exc, kind):
            return BackendRequestError(code, f"{type(exc).__name__}: {exc}"[:500])
    return BackendRequestError("backend_error", f"{type(exc).__name__}: {exc}"[:500])
