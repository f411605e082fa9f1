"""TGI's OpenAI-compatible routes: `/v1/chat/completions` and `/v1/completions`.

Mapped onto the same engine as `/generate`, with TGI's conversions: `max_tokens` (or
OpenAI's newer name `max_completion_tokens`) → `max_new_tokens`, and without either the
request runs to `max_total_tokens − input` as TGI 3.x does; `temperature` 0 means greedy,
any other value (or none) samples; `logprobs` + `top_logprobs` → `top_n_tokens`, and the
chat answer carries `logprobs.content[]` (token, logprob, top_logprobs) when asked;
`finish_reason` `eos_token` is reported as `stop`.

Completions streams end each choice with a `CompletionFinal` event that carries that
choice's `usage`, whatever `stream_options` says (TGI `router/src/server.rs`
`completions`); a chat stream's last token chunk carries `usage` only with
`stream_options.include_usage` (TGI `create_event_from_stream_token`).

The chat template is the emulator's own, documented and trivial: one line
`"{role}: {content}"` per message, then `"assistant:"`; its words are the prompt tokens.

Streams are `data:{chunk}` events ending with `data: [DONE]` (with a space, as axum's
`Event::data` writes it); an error inside a stream is TGI's OpenAI-style event
`data:{"error":{"message":…,"http_status_code":422}}` followed by `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from daemons.emulator import wire
from daemons.emulator.engine import Generation, Overloaded, RequestTimes, StreamToken
from daemons.emulator.instance import SYSTEM_FINGERPRINT, Service
from daemons.emulator.route_helpers import UNHEALTHY, error_response, read_json, token_chunks, wait_all
from daemons.emulator.tokens import Token
from daemons.emulator.validation import BodyError, GenerateParams, ValidationFailed, parse_parameters

FINISH = {"eos_token": "stop", "length": "length", "stop_sequence": "stop_sequence"}


@dataclass(frozen=True, slots=True)
class OpenAiCall:
    """A chat or completions request converted to TGI terms."""

    prompts: tuple[str, ...]
    params: GenerateParams
    stream: bool
    include_usage: bool
    model: str
    logprobs: bool = False


def _content_text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def chat_prompt(messages: object) -> str:
    """The emulator's chat template (see the module docstring)."""
    if not isinstance(messages, list) or not messages:
        raise BodyError("Failed to deserialize the JSON body into the target type: messages: "
                        "invalid type, expected a non-empty sequence of messages")
    lines = []
    for m in messages:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BodyError("Failed to deserialize the JSON body into the target type: messages: "
                            "missing field `role`")
        lines.append(f"{m['role']}: {_content_text(m.get('content'))}")
    return "\n".join([*lines, "assistant:"])


def _max_tokens(body: dict[str, Any]) -> object:
    """`max_tokens`, else `max_completion_tokens` (OpenAI's newer name for the same limit)."""
    value = body.get("max_tokens")
    return body.get("max_completion_tokens") if value is None else value


def _openai_params(body: dict[str, Any], *, token_logprobs: bool) -> GenerateParams:
    temperature = body.get("temperature")
    greedy = temperature == 0
    top_n = body.get("top_logprobs") if token_logprobs and body.get("logprobs") is True else None
    raw = {
        "max_new_tokens": _max_tokens(body),
        "temperature": None if greedy else temperature,
        "top_p": body.get("top_p"),
        "seed": body.get("seed"),
        "stop": body.get("stop"),
        "frequency_penalty": body.get("frequency_penalty"),
        "repetition_penalty": body.get("repetition_penalty"),
        "top_n_tokens": top_n,
        "do_sample": not greedy,
        "return_full_text": False,
        "details": True,
    }
    if isinstance(raw["stop"], str):
        raw["stop"] = [raw["stop"]]
    return parse_parameters(raw, path="")


def _call(body: dict[str, Any], prompts: tuple[str, ...], default_model: str, *, chat: bool) -> OpenAiCall:
    stream = body.get("stream") is True
    options = body.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    model = body.get("model")
    if not isinstance(model, str) or model in ("", "tgi"):
        model = default_model
    logprobs = chat and body.get("logprobs") is True
    return OpenAiCall(prompts, _openai_params(body, token_logprobs=chat), stream, include_usage, model, logprobs)


def parse_chat(body: object, default_model: str) -> OpenAiCall:
    if not isinstance(body, dict):
        raise BodyError("Failed to deserialize the JSON body into the target type: expected struct ChatRequest")
    return _call(body, (chat_prompt(body.get("messages")),), default_model, chat=True)


def parse_completion(body: object, default_model: str) -> OpenAiCall:
    if not isinstance(body, dict) or "prompt" not in body:
        raise BodyError("Failed to deserialize the JSON body into the target type: missing field `prompt`")
    prompt = body["prompt"]
    prompts = (prompt,) if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list | tuple) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise BodyError("Failed to deserialize the JSON body into the target type: prompt: "
                        "expected a string or a sequence of strings")
    return _call(body, tuple(prompts), default_model, chat=False)


def usage(gens: list[Generation]) -> dict[str, int]:
    prompt = sum(g.request.input_length for g in gens)
    completion = sum(len(g.generated) for g in gens)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _logprob(token: Token, top: list[Token]) -> dict[str, Any]:
    """One `ChatCompletionLogprob`: the token, its logprob and the alternatives asked for."""
    return {"token": token.text, "logprob": token.logprob,
            "top_logprobs": [{"token": t.text, "logprob": t.logprob} for t in top]}


def chat_logprobs(gen: Generation) -> dict[str, Any]:
    """`ChatCompletionLogprobs` of a finished generation (TGI pairs tokens with top_tokens)."""
    tops = gen.top_tokens or [[] for _ in gen.generated]
    return {"content": [_logprob(t, top) for t, top in zip(gen.generated, tops, strict=False)]}


def _envelope(obj: str, call: OpenAiCall, created: int) -> dict[str, Any]:
    return {"object": obj, "id": "", "created": created, "model": call.model,
            "system_fingerprint": SYSTEM_FINGERPRINT}


class OpenAiRoutes:
    """Handlers of the OpenAI-compatible routes over one `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.completions, methods=["POST"]),
        ]

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._handle(request, chat=False)

    async def _handle(self, request: Request, *, chat: bool) -> Response:
        times = RequestTimes(start=time.monotonic())
        model_id = self.service.deployment.model_id
        try:
            body = await read_json(request)
            call = parse_chat(body, model_id) if chat else parse_completion(body, model_id)
        except BodyError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        if not self.service.ready:
            return JSONResponse(UNHEALTHY, status_code=503)
        if len(call.prompts) > self.service.deployment.max_client_batch_size:
            limit = self.service.deployment.max_client_batch_size
            return error_response(ValidationFailed(f"Number of prompts must be <= {limit}"))
        if call.stream:
            return StreamingResponse(self._events(call, times, chat=chat), headers=self._stream_headers(call))
        return await self._complete(call, times, chat=chat)

    def _stream_headers(self, call: OpenAiCall) -> dict[str, str]:
        return {**wire.STREAM_HEADERS, "x-compute-type": self.service.deployment.compute_type,
                "x-compute-characters": str(sum(len(p) for p in call.prompts))}

    def _start(self, call: OpenAiCall, times: RequestTimes, *, streaming: bool) -> list[Generation]:
        gens: list[Generation] = []
        try:
            for prompt in call.prompts:
                gens.append(self.service.start(prompt, call.params, times, streaming=streaming))
        except (Overloaded, ValidationFailed):
            for g in gens:
                g.cancel()
            raise
        return gens

    async def _complete(self, call: OpenAiCall, times: RequestTimes, *, chat: bool) -> Response:
        try:
            gens = self._start(call, times, streaming=False)
        except (Overloaded, ValidationFailed) as exc:
            return error_response(exc)
        await wait_all(gens)
        created = int(time.time())
        if chat:
            g = gens[0]
            choice = {"index": 0, "message": {"role": "assistant", "content": g.generated_text},
                      "logprobs": chat_logprobs(g) if call.logprobs else None,
                      "finish_reason": FINISH[g.finish_reason or "length"]}
            body = {**_envelope("chat.completion", call, created), "choices": [choice], "usage": usage(gens)}
        else:
            choices = [{"index": i, "text": g.generated_text, "logprobs": None,
                        "finish_reason": FINISH[g.finish_reason or "length"]} for i, g in enumerate(gens)]
            body = {**_envelope("text_completion", call, created), "choices": choices, "usage": usage(gens)}
        headers = wire.timing_headers(gens[0], time.monotonic(), self.service.deployment.compute_type)
        return JSONResponse(body, headers=headers)

    async def _events(self, call: OpenAiCall, times: RequestTimes, *, chat: bool) -> AsyncIterator[bytes]:
        try:
            gens = self._start(call, times, streaming=True)
        except (Overloaded, ValidationFailed) as exc:
            yield wire.openai_error_event(exc.message)
            yield wire.SSE_DONE
            return
        created = int(time.time())
        if chat:
            async for chunk in token_chunks(gens[0], lambda st: self._chat_chunk(st, gens[0], call, created)):
                yield chunk
        else:
            async for i, st in merged(gens):
                yield self._completion_chunk(i, st, gens[i], call, created)
        yield wire.SSE_DONE

    @staticmethod
    def _chat_chunk(st: StreamToken, gen: Generation, call: OpenAiCall, created: int) -> bytes:
        content = "" if st.token.special else st.token.text
        finish = FINISH[st.finish_reason] if st.finish_reason else None
        logprobs = {"content": [_logprob(st.token, st.top_tokens)]} if call.logprobs else None
        choice = {"index": 0, "delta": {"role": "assistant", "content": content}, "logprobs": logprobs,
                  "finish_reason": finish}
        last = st.finish_reason is not None and call.include_usage
        return wire.sse({**_envelope("chat.completion.chunk", call, created), "choices": [choice],
                         "usage": usage([gen]) if last else None})

    @staticmethod
    def _completion_chunk(index: int, st: StreamToken, gen: Generation, call: OpenAiCall, created: int) -> bytes:
        """A `Chunk`, or for the choice's last token a `CompletionFinal` with that choice's usage;
        the final finish_reason is TGI's own name (`eos_token`, not `stop`), as its stream sends."""
        text = "" if st.token.special else st.token.text
        choice = {"index": index, "text": text, "logprobs": None, "finish_reason": st.finish_reason or ""}
        event = {**_envelope("text_completion", call, created), "choices": [choice]}
        if st.finish_reason is not None:
            event["usage"] = usage([gen])
        return wire.sse(event)


async def merged(gens: list[Generation]) -> AsyncIterator[tuple[int, StreamToken]]:
    """Tokens of several streaming generations as they come, tagged with their index."""
    out: asyncio.Queue[tuple[int, StreamToken]] = asyncio.Queue()

    async def pump(i: int, g: Generation) -> None:
        while True:
            st = await g.queue.get()
            out.put_nowait((i, st))
            if st.finish_reason is not None:
                return

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(gens)]
    remaining = len(gens)
    try:
        while remaining:
            i, st = await out.get()
            yield i, st
            if st.finish_reason is not None:
                remaining -= 1
    finally:
        for t in tasks:
            t.cancel()
        for g in gens:
            g.cancel()
