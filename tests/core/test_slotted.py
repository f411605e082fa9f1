"""`slotted.positional` builds what the class's own constructor builds, and refuses the classes
where skipping `__init__` would skip a rule (a `__post_init__`, a field outside `__init__`)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from daemons.bus import decode, encode
from daemons.bus.envelope import Envelope
from daemons.core.messages import MESSAGE_TYPES, Placement, Schedule
from daemons.core.slotted import positional
from daemons.policy import ClusterView, Decision, NodeView, PlacementRequest

CASES: list[tuple[type, tuple[Any, ...]]] = [
    (Schedule, ("r1", "m1", 10, 20, 3, ["n1"], 1.5, 0.25)),
    (Placement, ("r1", "n1", "tcp://127.0.0.1:1", "SERVE", 0.5, "why", 1e-5, 7)),
    (PlacementRequest, ("m1", 10, 20, -2, frozenset({"n2"}), 0.1)),
    (Decision, ("n1", "tcp://127.0.0.1:1", "COLD_START", 10.0, "why", ("m0",))),
    (ClusterView, ({}, {}, ClusterView.build([]).catalog, (), 4)),
    (Envelope, ("schedule", "bench", "r1", None, 1)),
]


@pytest.mark.parametrize(("cls", "values"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_builds_what_the_constructor_builds(cls: type, values: tuple[Any, ...]) -> None:
    built = positional(cls)(*values)
    assert type(built) is cls
    assert built == cls(*values)
    assert [getattr(built, f.name) for f in dataclasses.fields(cls)] == list(values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.__setattr__(dataclasses.fields(cls)[0].name, None)


def test_every_field_is_required() -> None:
    with pytest.raises(TypeError):
        positional(Decision)("n1", "tcp://127.0.0.1:1", "SERVE", 0.0, "why")  # evict left out


def test_refuses_a_class_whose_construction_does_more() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        positional(NodeView)  # derives load and gpu_util in __post_init__

    @dataclasses.dataclass(frozen=True, slots=True)
    class Derived:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="use its __init__"):
        positional(Derived)

    @dataclasses.dataclass(frozen=True)
    class Unslotted:
        a: int

    with pytest.raises(TypeError, match="not a slotted dataclass"):
        positional(Unslotted)


def test_inherited_fields_are_set_through_the_base_class_slots() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Base:
        a: int
        b: str = "x"

    @dataclasses.dataclass(frozen=True, slots=True)
    class Child(Base):
        c: float = 0.0

    assert positional(Child)(1, "y", 2.5) == Child(1, "y", 2.5)


def test_every_message_still_round_trips() -> None:
    """The fast validators build messages through `positional` where it applies: a decoded
    frame equals the message that was encoded, for a Schedule and a Placement."""
    assert all(dataclasses.is_dataclass(cls) for cls in MESSAGE_TYPES.values())
    for body in (Schedule("r1", "m1", 10, 20), CASES[1][0](*CASES[1][1])):
        env = decode(encode(body, "bench", "r1"))
        assert env == Envelope(body.TYPE, "bench", "r1", body)
        assert type(env.body) is type(body)
