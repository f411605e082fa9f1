"""TGI's bytes on the wire: JSON bodies, SSE events and timing headers (TGI router/src/server.rs, docs/openapi.json).

Field order and omissions follow TGI's serde structs: `top_tokens` is left out when
empty, `details` of a non-stream response when not requested, `best_of_sequences`
when there are none.  SSE events are `data:` + compact JSON + a blank line, with no
space after the colon; only the OpenAI-style streams end with `data: [DONE]`.
"""

from __future__ import annotations

import json
from typing import Any

from daemons.emulator.engine import Generation, StreamToken
from daemons.emulator.tokens import prefill_tokens

SSE_DONE = b"data: [DONE]\n\n"
STREAM_HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-accel-buffering": "no",
}

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def compact(obj: Any) -> str:
    return _dumps(obj)


def sse(obj: Any) -> bytes:
    """One server-sent event as axum's `Event::json_data` writes it."""
    return b"data:" + _dumps(obj).encode("utf-8") + b"\n\n"


def error_body(message: str, error_type: str) -> dict[str, str]:
    return {"error": message, "error_type": error_type}


def openai_error_event(message: str) -> bytes:
    """Errors inside chat/completions streams (TGI's `into_openai_event`, 422 hard-coded)."""
    return sse({"error": {"message": message, "http_status_code": 422}})


def full_text(gen: Generation, return_full_text: bool) -> str:
    text = gen.generated_text
    return gen.request.inputs + text if return_full_text else text


def seed_of(gen: Generation) -> int | None:
    """TGI reports the seed only for sampled requests."""
    return gen.request.seed if gen.request.sampling else None


def stream_event(st: StreamToken, gen: Generation, return_full_text: bool) -> bytes:
    """A `StreamResponse` event; the last one carries the full text and stream details."""
    event: dict[str, Any] = {"index": st.index, "token": st.token.as_json()}
    if st.top_tokens:
        event["top_tokens"] = [t.as_json() for t in st.top_tokens]
    if st.finish_reason is None:
        event["generated_text"] = None
        event["details"] = None
        return sse(event)
    event["generated_text"] = full_text(gen, return_full_text)
    event["details"] = stream_details(gen, st.finish_reason) if gen.request.params.details else None
    return sse(event)


def stream_details(gen: Generation, finish_reason: str) -> dict[str, Any]:
    return {
        "finish_reason": finish_reason,
        "generated_tokens": len(gen.generated),
        "seed": seed_of(gen),
        "input_length": gen.request.input_length,
    }


def _sequence_details(gen: Generation) -> dict[str, Any]:
    prefill = prefill_tokens(list(gen.request.words)) if gen.request.params.decoder_input_details else []
    body: dict[str, Any] = {
        "finish_reason": gen.finish_reason,
        "generated_tokens": len(gen.generated),
        "seed": seed_of(gen),
        "prefill": [p.as_json() for p in prefill],
        "tokens": [t.as_json() for t in gen.generated],
    }
    if gen.top_tokens:
        body["top_tokens"] = [[t.as_json() for t in top] for top in gen.top_tokens]
    return body


def generate_response(gen: Generation, others: list[Generation], return_full_text: bool) -> dict[str, Any]:
    """`GenerateResponse` for the best sequence `gen`; `others` are the rest of best_of."""
    body: dict[str, Any] = {"generated_text": full_text(gen, return_full_text)}
    if not gen.request.params.details:
        return body
    details = _sequence_details(gen)
    if others:
        details["best_of_sequences"] = [
            {"generated_text": full_text(o, return_full_text), **_sequence_details(o)} for o in others
        ]
    body["details"] = details
    return body


def _ms(seconds: float) -> str:
    return str(int(max(seconds, 0.0) * 1000))


def timing_headers(gen: Generation, end: float, compute_type: str) -> dict[str, str]:
    """TGI's `x-*` headers of a non-stream response (validation/queue/inference split)."""
    t = gen.times
    total = end - t.start
    inference = end - t.batch_start
    n = max(len(gen.generated), 1)
    return {
        "x-compute-type": compute_type,
        "x-compute-time": repr(total),
        "x-compute-characters": str(len(gen.request.inputs)),
        "x-total-time": _ms(total),
        "x-validation-time": _ms(t.queued - t.start),
        "x-queue-time": _ms(t.batch_start - t.queued),
        "x-inference-time": _ms(inference),
        "x-time-per-token": _ms(inference / n),
        "x-prompt-tokens": str(gen.request.input_length),
        "x-generated-tokens": str(len(gen.generated)),
    }
