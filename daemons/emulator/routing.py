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


async def read_json(request: Request) -> Any:
    """The body as JSON, or BodyError as axum's `Json` extractor would reject it."""
    content_type = request.headers.get("content-type", "")
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        raise BodyError("Expected request with `Content-Type: application/json`", status=415)
    return parse_json(await request.body())


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


