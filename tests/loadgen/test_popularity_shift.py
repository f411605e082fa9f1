"""`popularity_shift`: a model mix whose popularity changes during the run, drawn reproducibly."""

from __future__ import annotations

from collections import Counter

import pytest

from daemons.core.errors import ConfigError
from daemons.loadgen.workload import WorkloadSpec, from_dict, plan

MODELS = ("a", "b", "c")


def _spec(shift: int) -> WorkloadSpec:
    return WorkloadSpec(duration_s=60, rps=5, cv=1, models=MODELS, popularity="zipf", zipf_s=2.0,
                        popularity_shift=shift)


def test_each_phase_has_its_own_most_popular_model() -> None:
    schedule = plan(_spec(3))
    leaders = [Counter(r.model for r in schedule if 20 * k <= r.t_s < 20 * (k + 1)).most_common(1)[0][0]
               for k in range(3)]
    assert leaders == ["a", "b", "c"]


def test_the_shift_changes_only_which_model_each_request_asks_for() -> None:
    still, shifted = plan(_spec(0)), plan(_spec(3))
    assert [(r.request_id, r.t_s, r.prompt_tokens, r.max_new_tokens) for r in still] == \
        [(r.request_id, r.t_s, r.prompt_tokens, r.max_new_tokens) for r in shifted]
    assert [r.model for r in still] != [r.model for r in shifted]
    assert plan(_spec(3)) == shifted  # the same seed: the identical schedule for every arm


@pytest.mark.parametrize("value", [-1, 1.5, True, 10_000])
def test_a_bad_shift_is_one_clear_error(value: object) -> None:
    with pytest.raises(ConfigError, match="popularity_shift"):
        from_dict({"models": list(MODELS), "popularity_shift": value})
