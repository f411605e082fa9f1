"""`--from` an arm's manifest.json repeats that arm only (its scheduler), unless flags say otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.experiment.commands import _manifest_spec
from cli.experiment.spec import ExperimentSpec


def manifest(tmp_path: Path, scheduler: str, spec: ExperimentSpec) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"scheduler": scheduler, "spec": spec.to_dict()}))
    return path


@pytest.mark.parametrize("arm", ["centralized", "gossip"])
def test_an_arms_manifest_repeats_that_arm(tmp_path: Path, arm: str) -> None:
    spec = _manifest_spec(manifest(tmp_path, arm, ExperimentSpec()))
    assert spec.schedulers == (arm,)


def test_a_gossip_arm_of_a_run_with_a_standby_drops_the_standby(tmp_path: Path) -> None:
    spec = _manifest_spec(manifest(tmp_path, "gossip", ExperimentSpec(standby_coordinator=True)))
    assert spec.schedulers == ("gossip",) and not spec.standby_coordinator


def test_a_manifest_without_an_arm_repeats_the_whole_run(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"spec": ExperimentSpec().to_dict()}))
    assert _manifest_spec(path).schedulers == ("centralized", "gossip")
