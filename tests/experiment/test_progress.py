"""The experiment run's progress lines: few, labelled, with time left, success and faults."""

from __future__ import annotations

from cli.experiment.progress import Ticker, expected_line, expected_s
from daemons.loadgen.results import Progress


def beat(t: float, sent: int, ok: int, in_flight: int = 0, total: int = 1500) -> Progress:
    return Progress(t, total, sent, ok, 0, 0, in_flight)


def test_one_line_per_ten_seconds_not_per_beat() -> None:
    ticker = Ticker("gossip", 300.0)
    lines = [ticker.beat(beat(float(t), 5 * t, 5 * t - 2, 2)) for t in range(301)]
    printed = [line for line in lines if line]
    assert len(printed) == 31  # t = 0, 10, ..., 300
    assert all(line.startswith("[gossip] ") for line in printed)
    assert "1m40s of 5m00s (3m20s of arrivals left)" in printed[10]
    assert "ok 498 (100.0 %)" in printed[10]


def test_the_last_beat_prints_and_says_what_is_left() -> None:
    ticker = Ticker("centralized", 10.0)
    assert ticker.beat(beat(10.2, 50, 45, 5, total=50))
    assert ticker.beat(beat(11.2, 50, 48, 2, total=50)) is None
    last = ticker.beat(beat(11.9, 50, 50, 0, total=50))
    assert last is not None and "arrivals done, all answered" in last and "sent 50/50" in last


def test_faults_are_said_as_they_happen_and_named_afterwards() -> None:
    ticker = Ticker("centralized", 60.0)
    ticker.beat(beat(0.0, 0, 0))
    said = ticker.fault("fault", "node-1", "kind=pause;duration_s=4", 12.3)
    assert said == "[centralized] fault: pause node-1 at 12 s"
    assert ticker.fault("resumed", "node-1", "kind=pause;SIGCONT", 16.3) == "[centralized] resumed node-1 at 16 s"
    assert ticker.fault("silent", "node-1", "", 14.0) is None  # an observation, not an injection
    line = ticker.beat(beat(20.0, 100, 90, 10))
    assert line is not None and line.endswith("faults: pause node-1 at 12 s; resumed node-1 at 16 s")


def test_an_invalid_kind_of_record_says_nothing() -> None:
    assert Ticker("gossip", 10.0).fault("heard_again", "node-0", "", 3.0) is None


def test_the_expected_duration_is_stated_for_every_arm() -> None:
    assert expected_s(300.0, 2) > 600.0
    line = expected_line(300.0, ["centralized", "gossip"], 120.0)
    assert line.startswith("expected duration: about 10m40s") and "centralized, gossip" in line
