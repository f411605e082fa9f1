"""The Starlette app: TGI's native routes (TGI router/src/server.rs); OpenAI routes in `openai_routes.py`.

- `POST /generate`, `POST /generate_stream`, `POST /` (compat: `stream` picks, and
  `return_full_text` defaults to true so the text starts with the prompt; the
  non-stream answer is a one-element array).
- Non-stream errors are HTTP statuses (429 overloaded, 422 validation) with TGI's
  `{"error", "error_type"}` body; stream errors are one in-band event on a 200 stream,
  whose headers leave before the prefill runs.
- `GET /health`, `/ping`, `/`: 503 `{"error":"unhealthy","error_type":"healthcheck"}`
  until the modelled load time has passed, then 200 with an empty body.  Inference
  routes answer the same 503 until then (a real TGI is not listening yet).
- `GET /info`, `/metrics`, `/v1/models`; `POST /tokenize` (one token per word, with offsets).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from daemons.emulator import openai_routes, tokens, wire
from daemons.emulator.engine import Overloaded, RequestTimes
from daemons.emulator.instance import Deployment, Service, best_of
from daemons.emulator.route_helpers import (
    UNHEALTHY,
    error_event,
    error_response,
    read_json,
    token_chunks,
    wait_all,
)
from daemons.emulator.validation import (
    BodyError,
    GenerateParams,
    ValidationFailed,
    check_stream,
    parse_inputs,
    parse_parameters,
)


class TgiRoutes:
    """Handlers of the TGI-native routes over one `Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def routes(self) -> list[Route]:
        return [
            Route("/", self.compat, methods=["POST"]),
            Route("/", self.health, methods=["GET"]),
            Route("/generate", self.generate, methods=["POST"]),
            Route("/generate_stream", self.generate_stream, methods=["POST"]),
            Route("/tokenize", self.tokenize, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/ping", self.health, methods=["GET"]),
            Route("/info", self.info, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/v1/models", self.models, methods=["GET"]),
        ]

    # -- probes ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        if not self.service.ready:
            return JSONResponse(UNHEALTHY, status_code=503)
        return Response(status_code=200)

    async def info(self, request: Request) -> Response:
        return JSONResponse(self.service.info())

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(self.service.render_metrics())

    async def models(self, request: Request) -> Response:
        model_id = self.service.deployment.model_id
        card = {"id": model_id, "object": "model", "created": 0, "owned_by": model_id}
        return JSONResponse({"object": "list", "data": [card]})

    async def tokenize(self, request: Request) -> Response:
        """The emulator's tokenization (one token per word), as TGI's `/tokenize` shows its own."""
        try:
            inputs = parse_inputs(await read_json(request))
        except BodyError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        return JSONResponse(tokens.spans(inputs))

    # -- generation --------------------------------------------------------------------

    async def compat(self, request: Request) -> Response:
        return await self._handle(request, full_text_default=True, compat=True)

    async def generate(self, request: Request) -> Response:
        return await self._handle(request, full_text_default=False, stream=False)

    async def generate_stream(self, request: Request) -> Response:
        return await self._handle(request, full_text_default=False, stream=True)

    async def _handle(
        self, request: Request, *, full_text_default: bool, stream: bool = False, compat: bool = False
    ) -> Response:
        times = RequestTimes(start=time.monotonic())
        try:
            body = await read_json(request)
            inputs = parse_inputs(body)
            params = parse_parameters(body.get("parameters"))
            if compat:
                stream = _stream_flag(body)
        except BodyError as exc:
            return PlainTextResponse(str(exc), status_code=exc.status)
        if not self.service.ready:
            return JSONResponse(UNHEALTHY, status_code=503)
        full_text = params.return_full_text if params.return_full_text is not None else full_text_default
        if stream:
            return self._stream_response(inputs, params, times, full_text)
        return await self._complete(inputs, params, times, full_text, as_list=compat)

    async def _complete(
        self, inputs: str, params: GenerateParams, times: RequestTimes, full_text: bool, *, as_list: bool
    ) -> Response:
        try:
            gens = self.service.start_many(inputs, params, times, n=max(params.best_of or 1, 1), streaming=False)
        except (Overloaded, ValidationFailed) as exc:
            return error_response(exc)
        await wait_all(gens)
        best, others = best_of(gens)
        body = wire.generate_response(best, others, full_text)
        headers = wire.timing_headers(best, time.monotonic(), self.service.deployment.compute_type)
        return JSONResponse([body] if as_list else body, headers=headers)

    def _stream_response(
        self, inputs: str, params: GenerateParams, times: RequestTimes, full_text: bool
    ) -> StreamingResponse:
        headers = {
            **wire.STREAM_HEADERS,
            "x-compute-type": self.service.deployment.compute_type,
            "x-compute-characters": str(len(inputs)),
        }
        return StreamingResponse(self._events(inputs, params, times, full_text), headers=headers)

    async def _events(
        self, inputs: str, params: GenerateParams, times: RequestTimes, full_text: bool
    ) -> AsyncIterator[bytes]:
        try:
            check_stream(params)
        except ValidationFailed as exc:
            self.service.count_failure("validation")
            yield error_event(exc)
            return
        try:
            gen = self.service.start(inputs, params, times, streaming=True)
        except (Overloaded, ValidationFailed) as exc:
            yield error_event(exc)
            return
        async for chunk in token_chunks(gen, lambda st: wire.stream_event(st, gen, full_text)):
            yield chunk


def _stream_flag(body: dict[str, Any]) -> bool:
    flag = body.get("stream", False)
    if not isinstance(flag, bool):
        raise BodyError(
            f"Failed to deserialize the JSON body into the target type: stream: invalid type: {flag!r}, "
            "expected a boolean"
        )
    return flag


def create_app(deployment: Deployment) -> Starlette:
    """The ASGI app of one emulated instance; its engine runs for the app's lifespan."""
    service = Service(deployment)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start_engine()
        try:
            yield
        finally:
            await service.stop_engine()

    routes = TgiRoutes(service).routes() + openai_routes.OpenAiRoutes(service).routes()
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    app.state.payload_limit = deployment.payload_limit
    return app


