"""A gossip peer holds a request no peer can take now, in its admission queue: served when
memory frees, `overloaded` when the model's queue is full, `queue_timeout` at the deadline."""

from __future__ import annotations

import time
from pathlib import Path

from daemons.core.messages import Done, Error, Infer, Progress
from daemons.node.testing import Client, free_endpoint, running_node

LLAMA2 = "meta-llama/Llama-2-7b-hf"  # 23.6 GiB on a 24 GB GPU: nothing else fits beside it
LLAMA3 = "meta-llama/Llama-3.1-8B-Instruct"


def peer(tmp: Path, **fields: object):  # type: ignore[no-untyped-def]
    return running_node(tmp, "node-0", scheduler="gossip", gossip_bind=free_endpoint(), gossip_preset="ci",
                        gpu="a10g-24gb", models=[LLAMA2, LLAMA3], checkpoint_tier="gpu", **fields)


def start_busy(client: Client, tokens: int) -> None:
    """Load Llama-2 and keep it decoding: the GPU is full of a busy model."""
    client.send(Infer("busy", LLAMA2, "a b c d", tokens, action="COLD_START"), "busy")
    assert [e.type for e in client.until({"first_token"}, timeout_s=60)][-1] == "first_token"


def test_held_until_the_busy_model_finishes_then_cold_started(tmp_path: Path) -> None:
    with peer(tmp_path) as node, Client(node.bind) as client:
        start_busy(client, 200)
        client.send(Infer("wait", LLAMA3, "a b c d", 4, action=""), "wait")  # no action: the peer places it
        got = client.until({"done", "error"}, timeout_s=60)
        if not any(e.id == "wait" and e.type in ("done", "error") for e in got):
            got += client.until({"done", "error"}, timeout_s=60)
        finals = {e.id: e.body for e in got if e.type in ("done", "error")}
        # While it waited for room the peer said it holds it (so no silence timer sends it elsewhere).
        assert any(e.id == "wait" and isinstance(e.body, Progress) and e.body.tokens == 0 for e in got)
        busy, wait = finals["busy"], finals["wait"]
        assert isinstance(busy, Done) and isinstance(wait, Done), finals
        assert (wait.node, wait.action) == ("node-0", "COLD_START")
        assert busy.tokens == 200  # the running request was not disturbed


def test_queue_limit_and_deadline_give_their_outcomes(tmp_path: Path) -> None:
    with peer(tmp_path, queue_limit=1, queue_timeout_s=1.5) as node, Client(node.bind) as client:
        start_busy(client, 4000)
        sent = time.monotonic()
        for rid in ("first", "second"):
            client.send(Infer(rid, LLAMA3, "a b c d", 4, action=""), rid)
        answers = []
        while len(answers) < 2:
            answers += [e for e in client.until({"done", "error"}, timeout_s=30)
                        if e.id != "busy" and e.type in ("done", "error")]
        (second, first) = answers
        assert isinstance(second.body, Error) and (second.id, second.body.code) == ("second", "overloaded")
        assert "queue_limit 1" in second.body.message
        assert isinstance(first.body, Error) and (first.id, first.body.code) == ("first", "queue_timeout")
        assert 1.2 < time.monotonic() - sent < 10
        info = client.status().info
        assert (info["queued"], info["overloaded"], info["queue_timeouts"]) == (0, 1, 1), info
