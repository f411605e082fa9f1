"""The rules of a live migration, without sockets (daemons/node/migration.py)."""

from __future__ import annotations

from daemons.node.migration import MAX_ROUNDS, MIGRATION_DELTA, Relay, Rounds, Step, Verdict, detail, pick


def test_rounds_switch_once_a_round_leaves_at_most_delta_tokens_behind() -> None:
    rounds = Rounds()
    assert rounds.after_round(sent=100, now=100 + MIGRATION_DELTA + 1) is Step.AGAIN
    assert rounds.after_round(sent=121, now=121 + MIGRATION_DELTA) is Step.SWITCH
    assert rounds.done == 2


def test_rounds_are_bounded_when_the_destination_never_catches_up() -> None:
    rounds = Rounds(delta=5, max_rounds=MAX_ROUNDS)
    steps = [rounds.after_round(sent=i * 100, now=i * 100 + 50) for i in range(MAX_ROUNDS)]
    assert steps == [Step.AGAIN] * (MAX_ROUNDS - 1) + [Step.SWITCH]


def test_relay_passes_each_token_once_in_order_and_measures_the_gap() -> None:
    relay = Relay(next_index=10, last_token_t=1.0)
    assert relay.token(9, 1.1) is Verdict.DROP  # the client has it already
    assert relay.token(11, 1.2) is Verdict.BROKEN  # one missing: not a stream we can pass on
    assert relay.token(10, 1.5) is Verdict.PASS
    assert relay.token(10, 1.6) is Verdict.DROP  # a repeat
    assert relay.token(11, 1.7) is Verdict.PASS
    assert (relay.next_index, relay.switched_at, relay.first_t) == (12, 10, 1.5)
    assert abs(relay.gap_s - 0.5) < 1e-9  # from the source's last token to the destination's first


def test_event_detail_names_its_observer_first() -> None:
    text = detail("node-0", "r1", "node-1", 42, {"migration_gap_s": 0.25})
    assert text == "by=node-0;request=r1;to=node-1;tokens=42;migration_gap_s=0.250000"


def test_pick_moves_the_shortest_running_request_worth_moving() -> None:
    running = [("long", "m", 500, 400), ("short", "m", 30, 400), ("other", "n", 10, 400),
               ("queued", "m", 0, 400), ("ending", "m", 5, MIGRATION_DELTA)]
    assert pick(running) == "other"
    assert pick(running, "m") == "short"  # not queued (nothing to move yet), not about to end
    assert pick(running, "absent") == "" and pick([]) == ""
