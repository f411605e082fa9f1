"""Live migration of a running request, token-based: the rules, without sockets (sans-IO).

ServerlessLLM's live migration (Fu et al., "ServerlessLLM: Low-Latency Serverless Inference
for Large Language Models", OSDI'24, §5; code: ServerlessLLM `sllm/routers/migration_router.py`)
moves a running request without sending KV bytes: the destination recomputes the KV cache
from the tokens. While the source keeps decoding, the destination prefills the prompt plus
the tokens generated so far, in rounds; after each round the source has produced a few more
tokens, and once a round left at most `migration_delta` (20) tokens behind, the source
stops and the destination continues from the last token the client has.

Both ends are driven through TGI's own protocol, so the same code works against real TGI:
a round is a generate call with `inputs` = prompt + generated text and `max_new_tokens` = 1
(its output is thrown away), and the switch is one more call with the whole text and
`max_new_tokens` = what remains. TGI keeps no KV cache between calls unless its prefix
cache holds it, so the final call recomputes the context again: the client's stall is then
about one prefill of the context (plus one step), which is what the rounds' figures
predict. Rounds are bounded (`MAX_ROUNDS`, as Llumnix bounds its KV pre-copy stages: Sun et
al., OSDI'24, arXiv 2406.03243, §4.3): a destination slower at prefilling than the source
is at generating `delta` tokens would otherwise never catch up.

`Rounds` decides when to switch; `Relay` is the source's view of the destination's stream
after the switch (which tokens to pass on, the client-visible gap, when to fall back).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from daemons.core.messages import Migrate

MIGRATION_DELTA = 20  # tokens a round may leave behind and still switch (SLLM `migration_delta`)
MAX_ROUNDS = 3  # prefill rounds before switching anyway (Llumnix: at most 3 pre-copy stages)
# Seconds without a word from the destination (a round's ResumeReady, a Progress while it
# loads, a token once it serves) before the source gives up on it: three missed Progress beats.
SILENCE_S = 3.0
MAX_RESUME_ROUNDS = 64  # migration rounds a node prefills at once as a destination
NODE_SCHEMES = ("tcp://", "ipc://")  # a destination endpoint a node agent can connect to


class Step(Enum):
    AGAIN = "again"  # another round: too many tokens were generated during this one
    SWITCH = "switch"  # stop the source, the destination continues


@dataclass
class Rounds:
    """When to switch: after a round whose context was `sent` tokens while the source now
    has `now`, switch when `now - sent <= delta` or the rounds are used up."""

    delta: int = MIGRATION_DELTA
    max_rounds: int = MAX_ROUNDS
    done: int = 0  # rounds completed

    def after_round(self, sent: int, now: int) -> Step:
        self.done += 1
        if now - sent <= self.delta or self.done >= self.max_rounds:
            return Step.SWITCH
        return Step.AGAIN


class Verdict(Enum):
    PASS = "pass"  # the next token: relay it
    DROP = "drop"  # a token the client already has (a repeat): ignore it
    BROKEN = "broken"  # a token beyond the next one: the destination's stream is not ours


@dataclass
class Relay:
    """The source's side of a request after the switch: the destination's tokens continue
    the client's stream at `next_index`, each once and in order; the source keeps their
    texts, so that it can resume the request itself if the destination fails."""

    next_index: int  # tokens the client has: the switch point, then one more per relayed token
    last_token_t: float  # when the source produced its last token (monotonic)
    switched_at: int = -1  # the switch point (the first index the destination generates)
    first_t: float | None = None  # when the destination's first token arrived
    gap_s: float = 0.0  # longest wait between two tokens the client got since the switch

    def __post_init__(self) -> None:
        if self.switched_at < 0:
            self.switched_at = self.next_index

    def token(self, index: int, now: float) -> Verdict:
        if index < self.next_index:
            return Verdict.DROP
        if index > self.next_index:
            return Verdict.BROKEN
        if self.first_t is None:
            self.first_t = now
        self.gap_s = max(self.gap_s, now - self.last_token_t)
        self.last_token_t = now
        self.next_index += 1
        return Verdict.PASS


def pick(candidates: list[tuple[str, str, int, int]], model: str = "") -> str:
    """Which request to move when the order names none: `candidates` are (request id, model,
    tokens generated, tokens still to generate) of the requests running here. The one with
    the fewest tokens so far (the cheapest context to recompute; Llumnix's "shortest
    running" choice), among those of `model` (if given) that have started and still have
    more than MIGRATION_DELTA tokens to go (a request about to finish is not worth moving).
    "" if none qualifies."""
    fit = [(tokens, rid) for rid, m, tokens, left in candidates
           if (not model or m == model) and tokens > 0 and left > MIGRATION_DELTA]
    return min(fit)[1] if fit else ""


def refusal(order: Migrate, here: str, rid: str, found: bool, moving: bool, tokens: int,
            schemes: tuple[str, ...] = NODE_SCHEMES) -> str:
    """Why the source `here` refuses `order` for request `rid` ("": it starts the rounds).
    `found`: `rid` is served here; `moving`: it is migrating or migrated already; `tokens`:
    generated so far. The simulator's nodes pass their own endpoint scheme."""
    if order.node != here:
        return f"it names {order.node[:64]!r}, not this node"
    if not found:
        return "it is not being served here" if rid else "no request here is worth moving"
    if moving:
        return "it is migrating or migrated already"
    if tokens == 0:
        return "it has not generated a token yet (a queued request has nothing to move)"
    if order.to_node == here:
        return "its destination is this node"
    if not order.endpoint.startswith(schemes):
        return f"{order.endpoint[:64]!r} is no node endpoint"
    return ""


def fault_destination(nodes: list[str], source: str) -> str:
    """The destination of a `migrate` fault on `source`: the next node of the cluster in node
    order, wrapping around ("" when `source` is not one of two or more nodes)."""
    if source not in nodes or len(nodes) < 2:
        return ""
    return nodes[(nodes.index(source) + 1) % len(nodes)]


def detail(source: str, request_id: str, to_node: str, tokens: int, figures: dict[str, float]) -> str:
    """The `migrated` ClusterEvent's detail (events.csv): `by=` first, as the bus requires of
    a node's event (daemons/bus/authz.py), then the request and its figures."""
    parts = [f"by={source}", f"request={request_id}", f"to={to_node}", f"tokens={tokens}"]
    parts += [f"{k}={v:.6f}" for k, v in figures.items()]
    return ";".join(parts)
