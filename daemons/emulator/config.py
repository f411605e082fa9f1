"""The configuration of one emulated TGI instance and what it resolves to.

    config = EmulatorConfig(model_id="facebook/opt-125m", port=8080, gpu="a100-80gb")
    deployment = resolve(config)   # profiles loaded, every limit computed

`EmulatorConfig` holds what the launcher flags say; `resolve()` loads the profiles and
fills the limits TGI's launcher would infer:

- max_total_tokens = min(max_position_embeddings, 4096), max_input_tokens = max_total − 1,
  max_batch_prefill_tokens = max_input_tokens + 50 (TGI launcher defaults, TGI docs, launcher.md);
- max_batch_total_tokens = the KV budget left after weights and overhead in
  `gpu memory × cuda_memory_fraction` (`memory.default_max_batch_total_tokens`);
- load time = checkpoint bytes / tier bandwidth + init_seconds (`memory.load_seconds`).

No web server here: the HTTP process (`daemon.py`) and a node serving instances in its own
process (daemons/node/inproc.py) resolve the same flags the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemons.core.errors import ConfigError
from daemons.emulator.engine import EngineLimits
from daemons.emulator.instance import Deployment
from daemons.emulator.validation import Limits
from daemons.profiles import TIERS, load_gpu, load_model, load_tier, memory

#: TGI's launcher caps the default context at 4096 tokens to leave room for more users.
DEFAULT_MAX_TOTAL_TOKENS = 4096
#: Uncalibrated engine start-up (CUDA context, warm-up, graph capture): the low end of
#: ServerlessLLM's (OSDI'24, arXiv 2401.14351) 5-60 s.
DEFAULT_INIT_SECONDS = 5.0

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
