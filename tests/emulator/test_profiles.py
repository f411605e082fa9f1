"""Profiles, memory and latency model: the published figures come back out (DistServe, Vidur,
ServerlessLLM and the models' config.json)."""

from __future__ import annotations

import math

import pytest

from daemons.core.errors import ConfigError
from daemons.emulator import latency
from daemons.emulator.daemon import EmulatorConfig, resolve
from daemons.profiles import (
    GIB,
    TIERS,
    ProfileError,
    known_gpus,
    known_models,
    load_gpu,
    load_model,
    load_tier,
    memory,
)


def test_required_profiles_exist_and_cite_sources() -> None:
    assert {"a100-80gb", "h100-80gb", "a10g-24gb"} <= set(known_gpus())
    assert {"facebook/opt-125m", "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"} <= set(
        known_models()
    )
    for name in known_gpus():
        assert load_gpu(name).sources
    for model_id in known_models():
        model = load_model(model_id)
        assert model.sources
        for coefficients in model.latency.values():
            assert coefficients.sources
            assert all(s.startswith("derived: ") or "." in s or " " in s for s in coefficients.sources)
    for tier in TIERS:
        assert load_tier(tier).sources


def test_gpu_memory_sizes() -> None:
    assert load_gpu("a100-80gb").memory_bytes == 80 * GIB
    assert load_gpu("a10g-24gb").memory_bytes == 24 * GIB


def test_lookup_is_case_insensitive_and_knows_aliases() -> None:
    assert load_model("META-LLAMA/llama-3.1-8b-instruct").model_id == "meta-llama/Llama-3.1-8B-Instruct"
    assert load_model("opt-125m").model_id == "facebook/opt-125m"
    assert load_gpu("A100-80GB").name == "a100-80gb"


@pytest.mark.parametrize(
    ("call", "listed"),
    [
        (lambda: load_model("gpt-5"), "facebook/opt-125m"),
        (lambda: load_gpu("v100"), "a100-80gb"),
        (lambda: load_tier("tape"), "remote"),
    ],
)
def test_unknown_names_list_the_known_ones(call: object, listed: str) -> None:
    with pytest.raises(ProfileError, match=listed) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, ConfigError)
    assert "\n" not in str(info.value)


def test_kv_bytes_per_token_match_reference() -> None:
    # config.json; vLLM paper (SOSP'23): 512 KiB for Llama-2-7B, 128 KiB for Llama-3-8B (GQA), 800 KB for OPT-13B.
    assert memory.kv_bytes_per_token(load_model("meta-llama/Llama-2-7b-hf")) == 524_288
    assert memory.kv_bytes_per_token(load_model("meta-llama/Llama-3.1-8B-Instruct")) == 131_072
    assert memory.kv_bytes_per_token(load_model("facebook/opt-13b")) == 819_200


def test_footprint_is_weights_plus_overhead_plus_kv() -> None:
    model, gpu = load_model("meta-llama/Llama-3.1-8B-Instruct"), load_gpu("h100-80gb")
    base = memory.footprint_bytes(model, gpu, 0)
    assert base == memory.weights_bytes(model) + memory.overhead_bytes(model, gpu)
    assert memory.footprint_bytes(model, gpu, 1000) - base == 1000 * 131_072
    # Worked example (derived): 80 GB x 0.9 - 16 GB - ~3 GB -> ~400k tokens for Llama-3-8B.
    budget = memory.default_max_batch_total_tokens(model, gpu, 0.9)
    assert 380_000 < budget < 460_000
    assert memory.footprint_bytes(model, gpu, budget) <= gpu.memory_bytes * 0.9


def test_model_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(ProfileError, match=r"needs .* GiB"):
        resolve(EmulatorConfig(model_id="facebook/opt-13b", gpu="a10g-24gb"))
    with pytest.raises(ProfileError, match="lower --max-batch-total-tokens"):
        resolve(EmulatorConfig(model_id="meta-llama/Llama-2-7b-hf", gpu="a10g-24gb",
                               max_batch_total_tokens=100_000))


def test_load_time_is_bytes_over_bandwidth_plus_init() -> None:
    model = load_model("meta-llama/Llama-3.1-8B-Instruct")
    weights = memory.weights_bytes(model)
    assert memory.load_seconds(model, load_tier("gpu"), 2.0) == 2.0
    assert memory.load_seconds(model, load_tier("ssd"), 0.0) == pytest.approx(weights / 5e9)
    assert memory.load_seconds(model, load_tier("dram"), 1.0) == pytest.approx(weights / 25e9 + 1.0)
    tiers = [memory.load_seconds(model, load_tier(t), 0.0) for t in TIERS]
    assert tiers == sorted(tiers)
    assert math.isinf(load_tier("gpu").bandwidth_bytes_per_s)


def test_latency_closed_forms() -> None:
    c = load_model("facebook/opt-13b").latency_on(load_gpu("a100-80gb"))
    # DistServe OPT-13B on A100: decode at batch 1 is about 20 ms.
    assert latency.tpot_seconds(c, 1, 100) == pytest.approx(0.01993 + 6.27e-7 * 100 + 3.85e-5)
    # A 512-token prefill: DistServe's prefill form gives 65.6 ms with its own a = 16.46 ms;
    # the mixed-step model uses the decode a (19.93 ms) instead.
    assert latency.ttft_seconds(c, 1, 512) * 1000 == pytest.approx(65.6 - 16.46 + 19.93, abs=0.1)
    # Batching: one step of 16 prompts costs less than 16 steps of one.
    assert latency.ttft_seconds(c, 16, 128) < 16 * latency.ttft_seconds(c, 1, 128)
    assert latency.tpot_seconds(c, 64, 500) > latency.tpot_seconds(c, 1, 500)
    assert latency.mean_tpot_seconds(c, 4, 10, 1) == 0.0
    mean = latency.mean_tpot_seconds(c, 4, 10, 3)
    assert mean == pytest.approx((latency.tpot_seconds(c, 4, 11) + latency.tpot_seconds(c, 4, 12)) / 2)
    assert latency.e2e_seconds(c, 4, 10, 3) == pytest.approx(latency.ttft_seconds(c, 4, 10) + 2 * mean)


def test_7b_decode_step_sits_in_reference_band() -> None:
    # Bandwidth floors: optimized engines reach 8-12 ms/token on A100, 5-7 ms on H100 for 7-8B at batch 1.
    for model_id in ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-3.1-8B-Instruct"):
        model = load_model(model_id)
        a100 = latency.tpot_seconds(model.latency_on(load_gpu("a100-80gb")), 1, 512)
        h100 = latency.tpot_seconds(model.latency_on(load_gpu("h100-80gb")), 1, 512)
        assert 0.008 <= a100 <= 0.012
        assert 0.005 <= h100 <= 0.007


def test_resolve_applies_tgi_launcher_defaults() -> None:
    d = resolve(EmulatorConfig(model_id="meta-llama/Llama-3.1-8B-Instruct", init_seconds=1.0))
    assert (d.limits.max_input_tokens, d.limits.max_total_tokens) == (4095, 4096)
    assert d.engine_limits.max_batch_prefill_tokens == 4095 + 50
    assert d.engine_limits.max_concurrent_requests == 128
    d = resolve(EmulatorConfig(model_id="facebook/opt-125m", max_input_tokens=100, max_total_tokens=200,
                               max_batch_total_tokens=5000, checkpoint_tier="gpu", init_seconds=0.5))
    assert (d.limits.max_input_tokens, d.limits.max_total_tokens) == (100, 200)
    assert d.engine_limits.max_batch_total_tokens == 5000
    assert d.load_seconds == 0.5


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_input_tokens": 300, "max_total_tokens": 200}, "must be < `max_total_tokens`"),
        ({"max_batch_prefill_tokens": 10}, "must be >= `max_input_tokens`"),
        ({"max_batch_total_tokens": 1000}, "must be <= `max_batch_total_tokens`"),
    ],
)
def test_resolve_rejects_inconsistent_limits(fields: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve(EmulatorConfig(model_id="facebook/opt-125m", **fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "fields",
    [{"port": 70000}, {"checkpoint_tier": "tape"}, {"cuda_memory_fraction": 0.0},
     {"init_seconds": -1.0}, {"max_concurrent_requests": 0}, {"gpu": "v100"}, {"model_id": "nope"}],
)
def test_config_checks_on_construction(fields: dict[str, object]) -> None:
    kwargs: dict[str, object] = {"model_id": "facebook/opt-125m", **fields}
    with pytest.raises(ConfigError):
        EmulatorConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("model_id", known_models())
def test_every_model_states_the_context_the_emulator_serves(model_id: str) -> None:
    model = load_model(model_id)
    assert 0 < model.max_input_tokens < model.max_total_tokens <= model.max_position_embeddings
    gpu = next(iter(model.latency))
    limits = resolve(EmulatorConfig(model_id=model_id, gpu=gpu)).limits
    assert (limits.max_input_tokens, limits.max_total_tokens) == (model.max_input_tokens, model.max_total_tokens)
