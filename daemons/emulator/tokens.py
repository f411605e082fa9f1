"""Tokens without a tokenizer: deliberately simple and deterministic.

- Input: one token per whitespace-separated word (`"a  b\\nc"` is 3 tokens), ids from a
  stable hash of the word.  Real tokenizers give ≈1.3 tokens per English word; the
  emulator only needs lengths that a client can predict.
- Output: pseudo-words `" word"` drawn from a fixed vocabulary by a per-request
  `random.Random`.  Greedy requests (no sampling) are seeded from the emulator seed and
  the prompt, so the same prompt always gives the same text, as greedy decoding does;
  sampling requests are seeded from their `seed` parameter.
- End of sequence: never, unless the emulator runs with `eos_rate > 0`, in which case
  each token after the first is EOS (`</s>`, special) with that probability, drawn
  from the same seeded generator (so still deterministic).
"""

from __future__ import annotations

import random
import re
import zlib
from dataclasses import dataclass

_WORDS = (
    "the of and to in is was for on that with as by at from his it an were are which this be "
    "or has had first one their its new after but who not they have her she two been other "
    "when there all during into school time may years more most only over city some world "
    "would where later up such used many can state about national out known university united "
    "then made team american war family game where both film them team season under three "
    "between while around river party being well group early until north line south through "
    "music album before since series each these county public last part home league people "
    "because second same several house four could will than high town name called major also"
)
VOCAB = tuple(dict.fromkeys(_WORDS.split()))
VOCAB_ID_BASE = 1000
EOS_ID = 2
EOS_TEXT = "</s>"


@dataclass(frozen=True, slots=True)
class Token:
    id: int
    text: str
    logprob: float
    special: bool = False

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob, "special": self.special}


@dataclass(frozen=True, slots=True)
class PrefillToken:
    id: int
    text: str
    logprob: float | None

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "text": self.text, "logprob": self.logprob}


def tokenize(text: str) -> list[str]:
    """The input's tokens: its whitespace-separated words."""
    return text.split()


def spans(text: str) -> list[dict[str, object]]:
    """`/tokenize`'s answer: every word with its id and character offsets."""
    return [{"id": word_id(m.group()), "text": m.group(), "start": m.start(), "stop": m.end()}
            for m in re.finditer(r"\S+", text)]


def count_tokens(text: str) -> int:
    return len(text.split())


def word_id(word: str) -> int:
    """A stable id for an input word, outside the output vocabulary's id range."""
    return 10_000 + zlib.crc32(word.encode("utf-8")) % 30_000


def prefill_tokens(words: list[str]) -> list[PrefillToken]:
    """`details.prefill` for `decoder_input_details`: the first token has no logprob."""
    out = []
    for i, word in enumerate(words):
        text = word if i == 0 else f" {word}"
        logprob = None if i == 0 else -round(1.0 + (word_id(word) % 400) / 100.0, 4)
        out.append(PrefillToken(word_id(word), text, logprob))
    return out


def greedy_seed(emulator_seed: int, prompt: str) -> int:
    """The generator seed of a greedy request: same prompt, same output."""
    return zlib.crc32(prompt.encode("utf-8"), emulator_seed & 0xFFFFFFFF)


class TokenStream:
    """Deterministic pseudo-words for one request."""

    __slots__ = ("_eos_rate", "_produced", "_rng")

    def __init__(self, seed: int, eos_rate: float = 0.0) -> None:
        self._rng = random.Random(seed)
        self._eos_rate = eos_rate
        self._produced = 0

    def next(self) -> Token:
        self._produced += 1
        rng = self._rng
        logprob = -round(rng.random() * 2.0, 4)
        if self._eos_rate > 0.0 and self._produced > 1 and rng.random() < self._eos_rate:
            return Token(EOS_ID, EOS_TEXT, logprob, special=True)
        index = rng.randrange(len(VOCAB))
        return Token(VOCAB_ID_BASE + index, f" {VOCAB[index]}", logprob)

    def alternatives(self, chosen: Token, n: int) -> list[Token]:
        """`top_tokens` for one position: the chosen token then n − 1 less likely ones."""
        if n <= 0:
            return []
        rng = self._rng
        out = [chosen]
        for k in range(1, n):
            index = rng.randrange(len(VOCAB))
            logprob = round(chosen.logprob - k * (0.5 + rng.random()), 4)
            out.append(Token(VOCAB_ID_BASE + index, f" {VOCAB[index]}", logprob))
        return out
