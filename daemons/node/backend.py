"""Talking TGI to one backend instance: streaming through huggingface_hub, probes over HTTP.

The same code drives the emulator on a laptop and text-generation-inference on a GPU.

Every stream's connection is released on every path (end, error, cancellation,
timeout).  huggingface_hub's `AsyncInferenceClient` keeps each streaming response in
the client's exit stack until the client is closed, so one long-lived client holds every
response it ever streamed (memory) and every connection a failed or abandoned stream
left open (file descriptors).  So each stream gets its own light client, closed when the
stream ends however it ends; the connections themselves come from one pool per backend
(`_LentPool`), which the per-stream clients borrow and never close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar

from huggingface_hub import AsyncInferenceClient, set_async_client_factory
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import (
    GenerationError,
    OverloadedError,
    TextGenerationError,
    ValidationError,
)

# The httpx that the installed huggingface_hub uses (httpx in 1.x, httpx2 in 2.x), so the
# exception classes we catch are the ones its client raises.
from huggingface_hub.utils import httpx  # type: ignore[attr-defined]

from daemons.node.backend_api import BackendRequestError, Finished, Load, Token

__all__ = ["Backend", "BackendRequestError", "Finished", "Load", "Token", "httpx", "parse_gauges"]


BUSY_RATIO = "schedctl_emulator_busy_ratio"
# The node talks to its own TGI servers only, never to the Hub; but huggingface_hub (2.x)
# fetches an "agent harnesses" registry from huggingface.co the first time it builds a
# user-agent (utils/_detect_agent.py) unless it is offline. Set on the module, not in the
# environment, so the TGI instances the node launches can still download their weights.
hub_constants.HF_HUB_OFFLINE = True
# httpx's default pool of 100 connections would silently queue further streams
# (huggingface_hub inference/_client.py); the node bounds concurrency itself, per request, with timeouts.
UNBOUNDED = httpx.Limits(max_connections=None)
#: The pool the client being built should borrow (set by `Backend.stream` around the call).
_POOL: ContextVar[httpx.AsyncBaseTransport | None] = ContextVar("schedctl_backend_pool", default=None)


class _LentPool(httpx.AsyncBaseTransport):
    """A backend's connection pool lent to a per-stream client: closing the client
    (which closes its transport) leaves the pool and its idle connections alone."""

    def __init__(self, pool: httpx.AsyncBaseTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


def _client_factory() -> httpx.AsyncClient:
    pool = _POOL.get()
    if pool is None:  # a client made outside Backend.stream: its own unbounded pool
        return httpx.AsyncClient(limits=UNBOUNDED, timeout=None)
    return httpx.AsyncClient(transport=_LentPool(pool), timeout=None)


set_async_client_factory(_client_factory)


class Backend:
    """One TGI-compatible server at `base_url`."""

    def __init__(self, base_url: str, probe_client: httpx.AsyncClient) -> None:
        self.base_url = base_url
        self._pool = httpx.AsyncHTTPTransport(limits=UNBOUNDED)
        self._probe = probe_client
        self.open_streams = 0  # streams whose client is not closed yet (0 when idle: nothing leaks)

    async def stream(self, prompt: str, max_new_tokens: int) -> AsyncIterator[Token | Finished]:
        """Yield tokens, then one Finished; raise BackendRequestError on any failure.

        The stream's connection is released when this generator ends, however it ends:
        exhausted, raising, closed early (`aclose()`) or cancelled with its task."""
        client = AsyncInferenceClient(base_url=self.base_url)
        finished: Finished | None = None
        self.open_streams += 1
        try:
            # The client builds its httpx client lazily, inside this call: _POOL tells the
            # factory to lend it our pool (set and reset within this one step of the generator).
            lend = _POOL.set(self._pool)
            try:
                events = await client.text_generation(prompt, max_new_tokens=max_new_tokens, stream=True,
                                                      details=True)
            finally:
                _POOL.reset(lend)
            async for event in events:
                # TGI's last event carries the last token as well as the details: yield it too,
                # so that a consumer sees every generated token (the migration resumes after it).
                yield Token(event.token.text, int(event.index))
                if event.details is not None:
                    details = event.details
                    finished = Finished(int(details.generated_tokens), str(details.finish_reason))
                    break
        except Exception as exc:
            raise _classify(exc) from exc
        finally:
            await _close(client)
            self.open_streams -= 1
        if finished is None:
            raise BackendRequestError("incomplete_generation", "stream ended without its final event")
        yield finished  # after the connection went back: a consumer that stops here leaks nothing

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
                    gauges.get(BUSY_RATIO))

    async def close(self) -> None:
        """Close the pool: its idle connections go; streams still open end with an error."""
        await self._pool.aclose()


async def _close(client: AsyncInferenceClient) -> None:
    """Close a stream's client even while our task is being cancelled (shielded: a second
    cancellation must not leave the response, and its connection, open)."""
    closing = asyncio.ensure_future(client.close())  # type: ignore[no-untyped-call]
    try:
        await asyncio.shield(closing)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await closing
        raise


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
