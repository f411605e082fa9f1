"""A drop-in for TGI's `text-generation-launcher`: one model on one emulated GPU.

A real HTTP server speaking TGI's protocol (REFERENCE §1), with continuous batching
timed by a published latency model (`latency`), the GPU memory an instance occupies and
its load time (`memory`), and GPU/model profiles that cite their sources (`profiles`).

    from daemons.emulator import EmulatorConfig, run
    run(EmulatorConfig(model_id="facebook/opt-125m", port=8080))

Tests start it as a subprocess with `daemons.emulator.testing.start_emulator`.
"""

from daemons.emulator.memory import footprint_bytes, kv_bytes_per_token, load_seconds, weights_bytes
from daemons.emulator.profiles import (
    GpuProfile,
    ModelProfile,
    ProfileError,
    known_gpus,
    known_models,
    load_gpu,
    load_model,
    load_tier,
)
from daemons.emulator.server import EmulatorConfig, resolve, run

__all__ = [
    "EmulatorConfig",
    "GpuProfile",
    "ModelProfile",
    "ProfileError",
    "footprint_bytes",
    "known_gpus",
    "known_models",
    "kv_bytes_per_token",
    "load_gpu",
    "load_model",
    "load_seconds",
    "load_tier",
    "resolve",
    "run",
    "weights_bytes",
]
