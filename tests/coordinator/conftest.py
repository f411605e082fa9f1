"""A coordinator process shared by the integration tests of one module, on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemons.coordinator.testing import Client, CoordinatorProcess, running_coordinator


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorProcess]:
    log_dir: Path = tmp_path_factory.mktemp("coordinator")
    with running_coordinator(log_dir, dead_after=0.6) as coord:
        yield coord
    assert coord.proc.returncode == 0, coord.log()[-2000:]


@pytest.fixture
def client(coordinator: CoordinatorProcess) -> Iterator[Client]:
    with Client(coordinator.bind) as c:
        yield c
