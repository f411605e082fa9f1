"""Configuration and process of one emulated TGI instance (`schedctl start emulator`).

    config = EmulatorConfig(model_id="facebook/opt-125m", port=8080, gpu="a100-80gb")
    run(config)        # serves until SIGTERM / SIGINT, then returns (exit status 0)

`EmulatorConfig` holds what the launcher flags say; `resolve()` loads the profiles and
fills the limits TGI's launcher would infer:

- max_total_tokens = min(max_position_embeddings, 4096), max_input_tokens = max_total − 1,
  max_batch_prefill_tokens = max_input_tokens + 50 (TGI launcher defaults, TGI docs, launcher.md);
- max_batch_total_tokens = the KV budget left after weights and overhead in
  `gpu memory × cuda_memory_fraction` (`memory.default_max_batch_total_tokens`);
- load time = checkpoint bytes / tier bandwidth + init_seconds (`memory.load_seconds`).

Resources are bounded as a public server's must be: bodies over `payload_limit` (TGI's
2 MB default) get 413, JSON nests at most 128 deep (serde_json's limit), at most
`max_connections` connections are served at once (uvicorn's `limit_concurrency`: 503
beyond; never more than the file-descriptor limit allows), idle keep-alive connections
close after `keep_alive_s`, and running out of file descriptors or memory is logged as
one line per cause every few seconds (with a count of the ones suppressed), never as a
traceback per failed accept.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from daemons.core.errors import ConfigError
from daemons.emulator.engine import EngineLimits
from daemons.emulator.instance import Deployment
from daemons.emulator.tgi_routes import create_app
from daemons.emulator.validation import Limits
from daemons.profiles import TIERS, load_gpu, load_model, load_tier, memory

log = logging.getLogger("schedctl.emulator")

#: TGI's launcher caps the default context at 4096 tokens to leave room for more users.
DEFAULT_MAX_TOTAL_TOKENS = 4096
#: Uncalibrated engine start-up (CUDA context, warm-up, graph capture): the low end of
#: ServerlessLLM's (OSDI'24, arXiv 2401.14351) 5-60 s.
DEFAULT_INIT_SECONDS = 5.0
#: Open streams get this long to finish after SIGTERM before they are cut.
SHUTDOWN_GRACE_SECONDS = 5
#: File descriptors kept back from connections (listening socket, logs, the event loop's own).
FD_RESERVE = 32
#: Resource errors are logged at most once per cause in this many seconds.
RESOURCE_LOG_INTERVAL_S = 10.0
RESOURCE_ERRNOS = {errno.EMFILE: "EMFILE", errno.ENFILE: "ENFILE", errno.ENOBUFS: "ENOBUFS",
                   errno.ENOMEM: "ENOMEM"}


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Launcher flags of one instance; checked on construction (ConfigError names the fix)."""

    model_id: str
    port: int = 3000
    hostname: str = "127.0.0.1"
    gpu: str = "a100-80gb"
    max_concurrent_requests: int = 128
    checkpoint_tier: str = "ssd"
    max_input_tokens: int | None = None
    max_total_tokens: int | None = None
    max_batch_prefill_tokens: int | None = None
    max_batch_total_tokens: int | None = None
    cuda_memory_fraction: float = memory.DEFAULT_CUDA_MEMORY_FRACTION
    init_seconds: float = DEFAULT_INIT_SECONDS
    seed: int = 0
    eos_rate: float = 0.0
    max_best_of: int = 2
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_client_batch_size: int = 4
    validation_workers: int = 2
    payload_limit: int = 2_000_000
    max_connections: int = 1024
    keep_alive_s: int = 5

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {self.port}")
        if self.checkpoint_tier not in TIERS:
            raise ConfigError(f"--checkpoint-tier must be one of {', '.join(TIERS)}, got {self.checkpoint_tier!r}")
        if not 0.0 < self.cuda_memory_fraction <= 1.0:
            raise ConfigError(f"--cuda-memory-fraction must be in (0, 1], got {self.cuda_memory_fraction}")
        if self.init_seconds < 0:
            raise ConfigError(f"--init-seconds must be >= 0, got {self.init_seconds}")
        if not 0.0 <= self.eos_rate < 1.0:
            raise ConfigError(f"--eos-rate must be in [0, 1), got {self.eos_rate}")
        self._check_positive()
        load_model(self.model_id)
        load_gpu(self.gpu)

    def _check_positive(self) -> None:
        for name in ("max_concurrent_requests", "max_input_tokens", "max_total_tokens",
                     "max_batch_prefill_tokens", "max_batch_total_tokens", "max_best_of",
                     "max_client_batch_size", "validation_workers", "payload_limit", "max_connections"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be > 0, got {value}")
        if self.max_stop_sequences < 0 or self.max_top_n_tokens < 0:
            raise ConfigError("--max-stop-sequences and --max-top-n-tokens must be >= 0")
        if self.keep_alive_s <= 0:
            raise ConfigError(f"--keep-alive-s must be > 0, got {self.keep_alive_s}")


def _token_limits(config: EmulatorConfig, max_position: int) -> tuple[int, int, int]:
    """(max_input_tokens, max_total_tokens, max_batch_prefill_tokens), TGI's defaults and checks."""
    total = config.max_total_tokens
    if total is None:
        total = min(max_position, DEFAULT_MAX_TOTAL_TOKENS)
        if config.max_input_tokens is not None:
            total = max(total, config.max_input_tokens + 1)
    max_input = config.max_input_tokens if config.max_input_tokens is not None else total - 1
    prefill = config.max_batch_prefill_tokens
    prefill = prefill if prefill is not None else max_input + 50
    if max_input >= total:
        raise ConfigError(f"`max_input_tokens` must be < `max_total_tokens`. Given: {max_input} and {total}")
    if prefill < max_input:
        raise ConfigError(
            f"`max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: {prefill} and {max_input}"
        )
    return max_input, total, prefill


def resolve(config: EmulatorConfig) -> Deployment:
    """Load the profiles and compute every limit the instance runs with."""
    model = load_model(config.model_id)
    gpu = load_gpu(config.gpu)
    max_input, total, prefill = _token_limits(config, model.max_position_embeddings)
    kv_budget = config.max_batch_total_tokens
    if kv_budget is None:
        kv_budget = memory.default_max_batch_total_tokens(model, gpu, config.cuda_memory_fraction)
    memory.check_fits(model, gpu, kv_budget, config.cuda_memory_fraction)
    coefficients = model.latency_on(gpu)
    if total > kv_budget:
        raise ConfigError(f"`max_total_tokens` must be <= `max_batch_total_tokens`. Given: {total} and {kv_budget}")
    return Deployment(
        model_id=config.model_id,
        model=model,
        gpu=gpu,
        coefficients=coefficients,
        limits=Limits(max_input, total, config.max_best_of, config.max_stop_sequences, config.max_top_n_tokens),
        engine_limits=EngineLimits(config.max_concurrent_requests, prefill, kv_budget),
        load_seconds=memory.load_seconds(model, load_tier(config.checkpoint_tier), config.init_seconds),
        seed=config.seed,
        eos_rate=config.eos_rate,
        max_client_batch_size=config.max_client_batch_size,
        validation_workers=config.validation_workers,
        payload_limit=config.payload_limit,
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or a ConfigError saying how to fix it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; pass a free --port "
                f"(or stop the process holding it: ss -ltnp 'sport = :{port}')"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; check --hostname") from None
    return sock


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as Go's runtime does); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(requested: int, fd_limit: int) -> int:
    """Connections served at once: what was asked, but never past the fds this process has."""
    return max(min(requested, fd_limit - FD_RESERVE), 1)


class ResourceErrorLog:
    """A loop exception handler: resource errors (EMFILE, ...) become one line per cause per
    `RESOURCE_LOG_INTERVAL_S`, with the count suppressed since; anything else goes on to
    asyncio's default handler."""

    def __init__(self, interval_s: float = RESOURCE_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        cause = RESOURCE_ERRNOS.get(exc.errno or 0) if isinstance(exc, OSError) else None
        if cause is None:
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last.get(cause, -self.interval_s) < self.interval_s:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return
        self._last[cause] = now
        suppressed = self._suppressed.pop(cause, 0)
        log.error("%s: %s (%s); %d more suppressed in the last %.0f s; raise LimitNOFILE/ulimit -n or "
                  "lower --max-connections", cause, exc.strerror if isinstance(exc, OSError) else exc,
                  context.get("message", ""), suppressed, self.interval_s)


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT ends in a clean return (exit status 0)
    instead of re-raising the signal after the graceful shutdown, and resource errors
    of the accept loop are logged by `ResourceErrorLog`."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(ResourceErrorLog())
        await super().startup(sockets)


def run(config: EmulatorConfig) -> None:
    """Serve the emulated instance in the foreground until SIGTERM or SIGINT."""
    deployment = resolve(config)
    sock = bind_socket(config.hostname, config.port)
    app = create_app(deployment)
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's records go through our handler: rate-limited per cause (bus/logs.py)
        lifespan="on",
        http="auto",  # httptools and uvloop when installed (uvicorn[standard]); h11 + asyncio otherwise
        loop="auto",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        limit_concurrency=connection_limit(config.max_connections, raise_fd_limit()),
        timeout_keep_alive=config.keep_alive_s,
    )
    log.info(
        "emulating %s on %s at http://%s:%d: ready in %.2f s, KV budget %d tokens",
        deployment.model_id, deployment.gpu.name, config.hostname, sock.getsockname()[1],
        deployment.load_seconds, deployment.engine_limits.max_batch_total_tokens,
    )
    _Server(uv_config).run(sockets=[sock])
