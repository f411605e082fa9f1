"""Configuration and process of one emulated TGI instance (`schedctl start emulator`).

    config = EmulatorConfig(model_id="facebook/opt-125m", port=8080, gpu="a100-80gb")
    run(config)        # serves until SIGTERM / SIGINT, then returns (exit status 0)

`EmulatorConfig` holds what the launcher flags say; `resolve()` loads the profiles and
fills the limits TGI's launcher would infer:

- max_total_tokens = min(max_position_embeddings, 4096), max_input_tokens = max_total − 1,
  max_batch_prefill_tokens = max_input_tokens + 50 (TGI launcher defaults, REFERENCE §1.7);
- max_batch_total_tokens = the KV budget left after weights and overhead in
  `gpu memory × cuda_memory_fraction` (`memory.default_max_batch_total_tokens`);
- load time = checkpoint bytes / tier bandwidth + init_seconds (`memory.load_seconds`).
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass
from types import FrameType

import uvicorn

from daemons.bus.errors import ConfigError
from daemons.emulator import memory
from daemons.emulator.app import create_app
from daemons.emulator.engine import EngineLimits
from daemons.emulator.profiles import TIERS, load_gpu, load_model, load_tier
from daemons.emulator.service import Deployment
from daemons.emulator.validation import Limits

log = logging.getLogger("schedctl.emulator")

#: TGI's launcher caps the default context at 4096 tokens to leave room for more users.
DEFAULT_MAX_TOTAL_TOKENS = 4096
#: Uncalibrated engine start-up (CUDA context, warm-up, graph capture): the low end of
#: REFERENCE §3.6's 5-60 s.
DEFAULT_INIT_SECONDS = 5.0
#: Open streams get this long to finish after SIGTERM before they are cut.
SHUTDOWN_GRACE_SECONDS = 5


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
                     "max_client_batch_size", "validation_workers"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} must be > 0, got {value}")
        if self.max_stop_sequences < 0 or self.max_top_n_tokens < 0:
            raise ConfigError("--max-stop-sequences and --max-top-n-tokens must be >= 0")


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


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT ends in a clean return (exit status 0)
    instead of re-raising the signal after the graceful shutdown."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True


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
    )
    log.info(
        "emulating %s on %s at http://%s:%d: ready in %.2f s, KV budget %d tokens",
        deployment.model_id, deployment.gpu.name, config.hostname, sock.getsockname()[1],
        deployment.load_seconds, deployment.engine_limits.max_batch_total_tokens,
    )
    _Server(uv_config).run(sockets=[sock])
