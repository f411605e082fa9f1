"""GPU, model and storage-tier profiles: TOML data files with their sources cited.

One home for what a GPU and a model are, read alike by the emulator (timing and memory),
the node agent (its catalog: footprints and load times) and the experiment spec; `memory`
holds the memory model (weights, KV cache, load time from a storage tier).

Layout (shipped as package data, read with importlib.resources):

    profiles/gpus/<name>.toml      one GPU: memory, bandwidth, peak FLOPs
    profiles/models/<name>.toml    one model: shape from config.json, its served context
                                   (max_input_tokens, max_total_tokens) + per-GPU latency coefficients
    profiles/tiers.toml            storage tiers a checkpoint loads from (gpu|dram|ssd|remote)

Every file carries `sources = [...]` naming the public source of each figure; a figure
combined from several sources says "derived: ...".  An unknown name raises
`ProfileError` listing the known ones.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from daemons.core.errors import ConfigError

GIB = 1024**3
GB = 1e9
TIERS = ("gpu", "dram", "ssd", "remote")


class ProfileError(ConfigError):
    """An unknown or malformed profile; the message lists the known names."""


@dataclass(frozen=True, slots=True)
class GpuProfile:
    name: str
    description: str
    memory_bytes: int
    hbm_bandwidth_gbps: float
    peak_fp16_tflops: float
    runtime_overhead_bytes: int
    sources: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LatencyCoefficients:
    """Step-time coefficients in seconds (the TOML files hold milliseconds).

    t_step = alpha + beta·N_prefill + gamma·Σ prefill_len² + delta·Σ context_len + epsilon·B_decode
    """

    alpha: float
    beta: float
    gamma: float
    delta: float
    epsilon: float
    sources: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelProfile:
    model_id: str
    aliases: tuple[str, ...]
    params: int
    bytes_per_param: int
    n_layers: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    max_position_embeddings: int
    activation_overhead_bytes: int
    latency: Mapping[str, LatencyCoefficients]
    sources: tuple[str, ...]
    # The context a server of this model takes by default (TGI's launcher: max_total_tokens =
    # min(max_position_embeddings, 4096), max_input_tokens = max_total_tokens - 1): a request
    # needs prompt <= max_input_tokens and prompt + max_new_tokens <= max_total_tokens.
    max_input_tokens: int = 0
    max_total_tokens: int = 0

    def latency_on(self, gpu: GpuProfile) -> LatencyCoefficients:
        """This model's coefficients on `gpu`, or a ProfileError naming the GPUs it has."""
        try:
            return self.latency[gpu.name]
        except KeyError:
            known = ", ".join(sorted(self.latency))
            raise ProfileError(
                f"no latency profile for model {self.model_id!r} on GPU {gpu.name!r}; "
                f"profiled GPUs for this model: {known}"
            ) from None


@dataclass(frozen=True, slots=True)
class StorageTier:
    name: str
    bandwidth_bytes_per_s: float  # math.inf: already on the GPU, nothing to copy
    sources: tuple[str, ...]


def _read_toml(*parts: str) -> dict[str, Any]:
    node = resources.files(__package__)
    for part in parts:
        node = node.joinpath(part)
    return tomllib.loads(node.read_text(encoding="utf-8"))


def _toml_names(folder: str) -> list[str]:
    node = resources.files(__package__).joinpath(folder)
    return sorted(p.name[:-5] for p in node.iterdir() if p.name.endswith(".toml"))


def _sources(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    sources = data.get("sources")
    if not isinstance(sources, list) or not sources or not all(isinstance(s, str) for s in sources):
        raise ProfileError(f"profile {where} must cite its sources (a non-empty `sources` list)")
    return tuple(sources)


def _gpu_from(data: Mapping[str, Any], where: str) -> GpuProfile:
    return GpuProfile(
        name=str(data["name"]),
        description=str(data["description"]),
        memory_bytes=int(float(data["memory_gib"]) * GIB),
        hbm_bandwidth_gbps=float(data["hbm_bandwidth_gbps"]),
        peak_fp16_tflops=float(data["peak_fp16_tflops"]),
        runtime_overhead_bytes=int(float(data["runtime_overhead_gib"]) * GIB),
        sources=_sources(data, where),
    )


def _coefficients_from(data: Mapping[str, Any], where: str) -> LatencyCoefficients:
    ms = 1e-3
    return LatencyCoefficients(
        alpha=float(data["alpha_ms"]) * ms,
        beta=float(data["beta_ms"]) * ms,
        gamma=float(data["gamma_ms"]) * ms,
        delta=float(data["delta_ms"]) * ms,
        epsilon=float(data["epsilon_ms"]) * ms,
        sources=_sources(data, where),
    )


def _model_from(data: Mapping[str, Any], where: str) -> ModelProfile:
    latency = {
        gpu: _coefficients_from(table, f"{where} [latency.{gpu}]")
        for gpu, table in dict(data.get("latency", {})).items()
    }
    return ModelProfile(
        model_id=str(data["model_id"]),
        aliases=tuple(str(a) for a in data.get("aliases", ())),
        params=int(data["params"]),
        bytes_per_param=int(data["bytes_per_param"]),
        n_layers=int(data["n_layers"]),
        n_kv_heads=int(data["n_kv_heads"]),
        head_dim=int(data["head_dim"]),
        hidden_size=int(data["hidden_size"]),
        max_position_embeddings=int(data["max_position_embeddings"]),
        activation_overhead_bytes=int(float(data["activation_overhead_gib"]) * GIB),
        latency=latency,
        sources=_sources(data, where),
        **_context_from(data, where),
    )


def _context_from(data: Mapping[str, Any], where: str) -> dict[str, int]:
    """The stated context: 0 < max_input_tokens < max_total_tokens <= max_position_embeddings."""
    try:
        max_input, total = int(data["max_input_tokens"]), int(data["max_total_tokens"])
    except KeyError as exc:
        raise ProfileError(f"profile {where} must state its context: {exc.args[0]} is missing") from None
    if not 0 < max_input < total <= int(data["max_position_embeddings"]):
        raise ProfileError(f"profile {where}: need 0 < max_input_tokens ({max_input}) < max_total_tokens "
                           f"({total}) <= max_position_embeddings ({data['max_position_embeddings']})")
    return {"max_input_tokens": max_input, "max_total_tokens": total}


@functools.cache
def _gpus() -> dict[str, GpuProfile]:
    gpus = {}
    for stem in _toml_names("gpus"):
        gpu = _gpu_from(_read_toml("gpus", f"{stem}.toml"), f"gpus/{stem}.toml")
        gpus[gpu.name] = gpu
    return gpus


@functools.cache
def _models() -> dict[str, ModelProfile]:
    models = {}
    for stem in _toml_names("models"):
        model = _model_from(_read_toml("models", f"{stem}.toml"), f"models/{stem}.toml")
        models[model.model_id] = model
    return models


@functools.cache
def _tiers() -> dict[str, StorageTier]:
    data = _read_toml("tiers.toml")
    tiers = {}
    for name in TIERS:
        table = data[name]
        bandwidth = float(table["bandwidth_gbps"]) * GB
        tiers[name] = StorageTier(name, bandwidth, _sources(table, f"tiers.toml [{name}]"))
    return tiers


def known_gpus() -> list[str]:
    return sorted(_gpus())


def known_models() -> list[str]:
    return sorted(_models())


def load_gpu(name: str) -> GpuProfile:
    """The GPU profile called `name` (case-insensitive)."""
    gpu = _gpus().get(name.lower())
    if gpu is None:
        raise ProfileError(f"unknown GPU profile {name!r}; known GPUs: {', '.join(known_gpus())}")
    return gpu


def load_model(model_id: str) -> ModelProfile:
    """The model profile for a HF Hub id or alias (case-insensitive)."""
    wanted = model_id.lower()
    for model in _models().values():
        if wanted == model.model_id.lower() or wanted in (a.lower() for a in model.aliases):
            return model
    raise ProfileError(f"unknown model {model_id!r}; known models: {', '.join(known_models())}")


def load_tier(name: str) -> StorageTier:
    tier = _tiers().get(name.lower())
    if tier is None:
        raise ProfileError(f"unknown checkpoint tier {name!r}; known tiers: {', '.join(TIERS)}")
    return tier


def tier_is_resident(tier: StorageTier) -> bool:
    """True when the checkpoint already sits in GPU memory (nothing to copy)."""
    return math.isinf(tier.bandwidth_bytes_per_s)


__all__ = [
    "GB",
    "GIB",
    "TIERS",
    "GpuProfile",
    "LatencyCoefficients",
    "ModelProfile",
    "ProfileError",
    "StorageTier",
    "known_gpus",
    "known_models",
    "load_gpu",
    "load_model",
    "load_tier",
    "tier_is_resident",
]
