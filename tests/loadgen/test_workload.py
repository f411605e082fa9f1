"""The workload model: exact counts, rescaled gamma arrivals, popularity, lengths, dict round trip."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from daemons.core.errors import ConfigError
from daemons.loadgen import LengthDist, WorkloadSpec, parse_length, plan
from daemons.loadgen.distributions import MAX_TOKENS
from daemons.loadgen.frames import make_prompt
from daemons.loadgen.workload import from_dict, gamma_offsets


def gaps_cv(times: list[float] | np.ndarray) -> float:
    gaps = np.diff(np.concatenate([[0.0], np.asarray(times)]))
    return float(gaps.std() / gaps.mean())


def test_plan_is_deterministic_for_a_seed() -> None:
    spec = WorkloadSpec(duration_s=20, rps=10, cv=8, seed=7, models=("a", "b", "c"), popularity="zipf")
    assert plan(spec) == plan(spec)
    assert plan(spec) != plan(WorkloadSpec(duration_s=20, rps=10, cv=8, seed=8, models=("a", "b", "c")))


@pytest.mark.parametrize(("rps", "duration"), [(5.0, 300.0), (1000.0, 2.5), (0.7, 10.0), (3.3, 7.0), (1.0, 1.0)])
def test_exact_count_and_last_offset_is_n_over_rate(rps: float, duration: float) -> None:
    schedule = plan(WorkloadSpec(duration_s=duration, rps=rps, cv=8, seed=1))
    n = round(rps * duration)
    assert len(schedule) == n
    assert schedule[-1].t_s == pytest.approx(n / rps, rel=1e-12)
    assert all(a.t_s <= b.t_s for a, b in itertools.pairwise(schedule))
    assert schedule[0].t_s > 0  # like vLLM, the first request waits one gap too


def test_request_ids_are_unique_and_ordered() -> None:
    schedule = plan(WorkloadSpec(duration_s=100, rps=20, cv=1, seed=3, id_prefix="lg1-"))
    ids = [r.request_id for r in schedule]
    assert ids[:2] == ["lg1-000000", "lg1-000001"]
    assert len(set(ids)) == len(ids) == 2000


def test_cv_zero_gives_constant_gaps() -> None:
    times = [r.t_s for r in plan(WorkloadSpec(duration_s=10, rps=4, cv=0, seed=1))]
    assert np.allclose(np.diff(times), 0.25)
    assert times[-1] == pytest.approx(10.0)


@pytest.mark.parametrize(("cv", "n", "tolerance"), [(1.0, 200_000, 0.02), (2.0, 200_000, 0.05), (8.0, 1_000_000, 0.08)])
def test_gap_cv_is_close_to_target_for_large_n(cv: float, n: int, tolerance: float) -> None:
    # Sampling error of the CV grows with the gamma's kurtosis (6/shape = 6 CV²): hence the tolerances.
    offsets = gamma_offsets(np.random.default_rng(11), n, rps=1000.0, cv=cv)
    assert gaps_cv(offsets) == pytest.approx(cv, rel=tolerance)


def test_plan_cv_matches_target_poisson() -> None:
    schedule = plan(WorkloadSpec(duration_s=200, rps=100, cv=1, seed=5))
    assert gaps_cv([r.t_s for r in schedule]) == pytest.approx(1.0, rel=0.03)


def test_rescaling_keeps_the_gap_shape() -> None:
    # Rescaling multiplies every gap by one factor, so it cannot change the CV.
    rng = np.random.default_rng(2)
    raw = rng.gamma(1 / 64, 1.0, size=5000)
    scaled = gamma_offsets(np.random.default_rng(2), 5000, rps=1.0 / 64, cv=8.0)
    assert gaps_cv(np.cumsum(raw)) == pytest.approx(gaps_cv(scaled), rel=1e-9)


def model_shares(spec: WorkloadSpec) -> dict[str, float]:
    counts = Counter(r.model for r in plan(spec))
    total = sum(counts.values())
    return {m: counts[m] / total for m in spec.models}


def test_uniform_popularity() -> None:
    shares = model_shares(WorkloadSpec(duration_s=200, rps=100, seed=1, models=("a", "b", "c", "d")))
    assert all(share == pytest.approx(0.25, abs=0.02) for share in shares.values())


def test_zipf_popularity_first_listed_is_most_popular() -> None:
    shares = model_shares(WorkloadSpec(duration_s=400, rps=100, seed=1, models=("a", "b", "c", "d"),
                                       popularity="zipf", zipf_s=1.5))
    expected = 1 / np.arange(1, 5) ** 1.5
    expected /= expected.sum()
    for share, want in zip(shares.values(), expected, strict=True):
        assert share == pytest.approx(want, abs=0.015)


def test_explicit_weights() -> None:
    shares = model_shares(WorkloadSpec(duration_s=200, rps=100, seed=1, models=("a", "b", "c"),
                                       popularity="weights", weights=(6, 3, 1)))
    assert shares == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1}, abs=0.02)


def test_fixed_uniform_and_lognormal_lengths() -> None:
    spec = WorkloadSpec(duration_s=500, rps=100, seed=9, prompt_tokens=parse_length("uniform:10-20", "p"),
                        output_tokens=parse_length(7, "o"))
    schedule = plan(spec)
    assert {r.max_new_tokens for r in schedule} == {7}
    assert {r.prompt_tokens for r in schedule} == set(range(10, 21))
    lognormal = plan(WorkloadSpec(duration_s=500, rps=100, seed=9,
                                  prompt_tokens=parse_length("lognormal:mean=1155,median=1020", "p")))
    prompts = np.array([r.prompt_tokens for r in lognormal])
    assert np.median(prompts) == pytest.approx(1020, rel=0.03)
    assert prompts.mean() == pytest.approx(1155, rel=0.03)


def test_lognormal_is_clipped_to_max() -> None:
    dist = parse_length("lognormal:mean=500,median=100,max=300", "p")
    spec = WorkloadSpec(duration_s=100, rps=100, seed=1, prompt_tokens=dist)
    prompts = [r.prompt_tokens for r in plan(spec)]
    assert max(prompts) == 300 and min(prompts) >= 1


def test_changing_lengths_keeps_arrivals_and_models() -> None:
    a = plan(WorkloadSpec(duration_s=30, rps=10, seed=4, models=("x", "y")))
    b = plan(WorkloadSpec(duration_s=30, rps=10, seed=4, models=("x", "y"), prompt_tokens=LengthDist("fixed", 5)))
    assert [(r.t_s, r.model) for r in a] == [(r.t_s, r.model) for r in b]


@pytest.mark.parametrize("text", ["512", "fixed:512", "uniform:1-9", "uniform:3,4",
                                  "lognormal:mean=10,median=8", "lognormal:mean=10,median=8,max=99", "trace"])
def test_length_strings_round_trip(text: str) -> None:
    dist = parse_length(text, "x")
    assert parse_length(dist.describe(), "x") == dist


@pytest.mark.parametrize(("value", "match"), [
    ("uniform:9-1", "A <= B"), ("lognormal:mean=5,median=9", "median <= mean"), ("lognormal:mean=5", "median"),
    ("gauss:4", "expected"), ("0", "1.."), (f"{MAX_TOKENS + 1}", "1.."), ("fixed:x", "cannot read"),
    ({"kind": "uniform", "low": 1}, "A <= B"), ({"kind": "poisson"}, "kind"), (True, "expected"), (1.5, "expected"),
])
def test_bad_lengths_name_the_fix(value: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_length(value, "--prompt-tokens")


def test_from_dict_round_trips_through_to_dict() -> None:
    table = {"duration_s": 60, "rps": 2, "cv": 4, "seed": 3, "models": ["a", "b"], "popularity": "weights",
             "weights": [1, 2], "prompt_tokens": "lognormal:mean=512,median=400,max=1500",
             "output_tokens": {"kind": "uniform", "low": 4, "high": 8}}
    spec = from_dict(table)
    assert spec.weights == (1.0, 2.0) and spec.output_tokens == LengthDist("uniform", low=4, high=8)
    assert WorkloadSpec.from_dict(spec.to_dict()) == spec
    assert from_dict({**spec.to_dict(), "rps": 3.0}).rps == 3.0


@pytest.mark.parametrize(("table", "match"), [
    ({"rsp": 5}, "unknown key.*rsp.*valid keys"),
    ({"rps": "fast"}, "rps: expected a number"),
    ({"seed": 1.5}, "whole number"),
    ({"models": [1, 2]}, "list of strings"),
    ({"models": []}, "at least one"),
    ({"models": ["a", "a"]}, "twice"),
    ({"rps": 0}, "--rps"),
    ({"duration_s": -1}, "--duration"),
    ({"rps": 0.01, "duration_s": 10}, "rounds? to|round to"),
    ({"cv": -1}, "cv"),
    ({"popularity": "pareto"}, "uniform, zipf, weights"),
    ({"popularity": "weights", "models": ["a", "b"], "weights": [1]}, "one weight per model"),
    ({"popularity": "zipf", "zipf_s": 0}, "zipf exponent"),
    ({"prompt_tokens": "trace"}, "needs a trace file"),
    ({"arrivals": "trace"}, "needs a trace file"),
    ({"arrivals": "poisson"}, "auto, gamma, trace"),
    ({"id_prefix": "a b"}, "id_prefix"),
])
def test_bad_workload_tables_name_the_fix(table: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(table)


def test_prompt_has_exactly_the_token_count_and_is_deterministic() -> None:
    for n in (1, 7, 1000, 9000):
        words = make_prompt("r000042", n).split()
        assert len(words) == n
    assert make_prompt("r1", 50) == make_prompt("r1", 50)
    assert make_prompt("r1", 50) != make_prompt("r2", 50)
    assert len(make_prompt("r3", 100_000).encode()) < 1 << 20  # fits the envelope's frame cap


def test_fit_context_clips_prompt_then_output_and_counts_per_model() -> None:
    from daemons.loadgen.workload import ContextLimit, PlannedRequest, fit_context

    limits = {"m": ContextLimit(max_input_tokens=99, max_total_tokens=100)}
    schedule = [PlannedRequest("a", 0.0, "m", 50, 50), PlannedRequest("b", 0.1, "m", 500, 10),
                PlannedRequest("c", 0.2, "m", 60, 60), PlannedRequest("d", 0.3, "other", 10**5, 10**5)]
    fitted, clipped = fit_context(schedule, limits)
    assert [(r.prompt_tokens, r.max_new_tokens) for r in fitted] == [(50, 50), (99, 1), (60, 40), (10**5, 10**5)]
    assert clipped == {"m": 2}  # a model without a known context is left as drawn


def test_experiment_schedules_are_fitted_to_every_profiled_model() -> None:
    from daemons.loadgen.workload import plan_fitted
    from daemons.profiles import known_models, load_model

    spec = WorkloadSpec(duration_s=60, rps=10, seed=2, models=tuple(known_models()),
                        prompt_tokens=LengthDist("lognormal", mean=3000, median=2500, max=8192),
                        output_tokens=LengthDist("uniform", low=500, high=3000))
    schedule, notes = plan_fitted(spec)
    assert notes and all(n.startswith("clipped ") for n in notes)
    for r in schedule:
        model = load_model(r.model)
        assert r.prompt_tokens <= model.max_input_tokens
        assert r.prompt_tokens + r.max_new_tokens <= model.max_total_tokens
        assert r.max_new_tokens >= 1
