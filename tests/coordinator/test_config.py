"""CoordinatorConfig: defaults, TOML, environment, validation messages that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemons.coordinator import CoordinatorConfig
from daemons.core.errors import ConfigError


def test_defaults_match_the_design() -> None:
    c = CoordinatorConfig()
    assert (c.bind, c.state_bind, c.events_bind) == ("tcp://127.0.0.1:5555", "tcp://127.0.0.1:5556",
                                                     "tcp://127.0.0.1:5557")
    assert (c.policy, c.dead_after_s) == ("affinity-score", 3.0)


def test_toml_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "schedctl.toml"
    path.write_text('[coordinator]\npolicy = "random"\ndead_after_s = 5\nseed = 3\n'
                    '[node]\nname = "ignored"\n')
    assert CoordinatorConfig.from_toml(path).policy == "random"
    assert CoordinatorConfig.from_toml(path).dead_after_s == 5.0
    monkeypatch.setenv("SCHEDCTL_COORDINATOR_POLICY", "least-loaded")
    monkeypatch.setenv("SCHEDCTL_COORDINATOR_SEED", "9")
    c = CoordinatorConfig.load(path, {"dead_after_s": 1.5, "policy": None})
    assert (c.policy, c.seed, c.dead_after_s) == ("least-loaded", 9, 1.5)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"policy": "fastest"}, "unknown policy 'fastest' for the centralized coordinator: choose one of "
                                "affinity-score"),
        ({"bind": "localhost:5555"}, "bind must be a ZeroMQ endpoint"),
        ({"events_bind": "tcp://127.0.0.1:5555"}, "three different addresses"),
        ({"dead_after_s": 0}, "dead_after_s must be a positive number"),
        ({"dead_after_s": "soon"}, "dead_after_s must be a float"),
        ({"colour": "blue"}, "unknown key"),
        ({"rebalance_threshold": 0}, "rebalance_threshold must be an integer >= 1"),
    ],
)
def test_bad_values_name_the_problem(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CoordinatorConfig.load(None, overrides)


def test_missing_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--config"):
        CoordinatorConfig.from_toml(tmp_path / "nope.toml")
