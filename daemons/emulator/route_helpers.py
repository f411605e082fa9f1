"""Helpers shared by the route modules: body reading, error mapping, token streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from daemons.emulator import wire
from daemons.emulator.engine import Generation, Overloaded, StreamToken
from daemons.emulator.validation import BodyError, ValidationFailed, parse_json

UNHEALTHY = wire.error_body("unhealthy", "healthcheck")


#: TGI's `--payload-limit` default (bytes): larger bodies get 413 (axum `DefaultBodyLimit`).
DEFAULT_PAYLOAD_LIMIT = 2_000_000
TOO_LARGE = "Failed to buffer the request body: length limit exceeded"


async def read_json(request: Request) -> Any:
    """The body as JSON, or BodyError as axum's `Json` extractor would reject it."""
    content_type = request.headers.get("content-type", "")
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise BodyError("Expected request with `Content-Type: application/json`", status=415)
    limit = getattr(request.app.state, "payload_limit", DEFAULT_PAYLOAD_LIMIT)
    return parse_json(await read_body(request, limit))


async def read_body(request: Request, limit: int) -> bytes:
    """The body, never buffering more than `limit` bytes: a declared or actual excess is a 413."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyError(TOO_LARGE, status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyError(TOO_LARGE, status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(exc: Overloaded | ValidationFailed) -> JSONResponse:
    """Non-stream error: 429 overloaded or 422 validation, TGI's ErrorResponse body."""
    status = 429 if isinstance(exc, Overloaded) else 422
    return JSONResponse(wire.error_body(exc.message, exc.error_type), status_code=status)


def error_event(exc: Overloaded | ValidationFailed) -> bytes:
    """In-band error of a TGI stream (HTTP 200 already sent)."""
    return wire.sse(wire.error_body(exc.message, exc.error_type))


async def wait_all(gens: list[Generation]) -> None:
    """Wait for non-stream generations; if the handler is cancelled, drop them."""
    try:
        for g in gens:
            await g.done.wait()
    finally:
        for g in gens:
            g.cancel()


async def token_chunks(gen: Generation, render: Callable[[StreamToken], bytes]) -> AsyncIterator[bytes]:
    """Rendered events of a streaming generation; every token ready at once goes in one write.

    Closing the iterator early (client gone) cancels the generation in the engine.
    """
    try:
        while True:
            st = await gen.queue.get()
            parts = [render(st)]
            while st.finish_reason is None and not gen.queue.empty():
                st = gen.queue.get_nowait()
                parts.append(render(st))
            yield b"".join(parts)
            if st.finish_reason is not None:
                return
    finally:
        gen.cancel()


