"""Request parsing and validation with TGI's rules, order and messages.

Two layers, as in TGI:

- deserialization (axum's `Json` extractor + serde): a body that is not JSON is a 400, a
  field of the wrong type a 422, both with a plain-text body (`BodyError`);
- validation (`router/src/validation.rs`): a 422 `{"error": "Input validation error: …",
  "error_type": "validation"}` (`ValidationFailed`), or an in-band event on streams.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from daemons.emulator import tokens


class BodyError(Exception):
    """A body serde would reject: plain-text response with `status`."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ValidationFailed(Exception):
    """TGI's `ValidationError`; `str()` is the message without the prefix."""

    error_type = "validation"

    @property
    def message(self) -> str:
        return f"Input validation error: {self}"


@dataclass(frozen=True, slots=True)
class Limits:
    max_input_tokens: int
    max_total_tokens: int
    max_best_of: int = 2
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5


@dataclass(frozen=True, slots=True)
class GenerateParams:
    """`GenerateParameters` after deserialization, before validation."""

    details: bool = True
    decoder_input_details: bool = False
    max_new_tokens: int | None = None
    do_sample: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    truncate: int | None = None
    return_full_text: bool | None = None
    best_of: int | None = None
    top_n_tokens: int | None = None
    watermark: bool = False


@dataclass(frozen=True, slots=True)
class ValidRequest:
    inputs: str
    words: tuple[str, ...]
    max_new_tokens: int
    params: GenerateParams
    sampling: bool
    seed: int  # TGI draws one when unset; reported in details only when sampling

    @property
    def input_length(self) -> int:
        return len(self.words)


_BOOL = ("details", "decoder_input_details", "do_sample", "watermark", "return_full_text")
_UINT = ("max_new_tokens", "top_k", "seed", "truncate", "best_of", "top_n_tokens")
_FLOAT = ("temperature", "top_p", "typical_p", "repetition_penalty", "frequency_penalty")


#: serde_json's recursion limit: deeper JSON is refused before anything reads it.
MAX_JSON_DEPTH = 128


def parse_json(body: bytes) -> Any:
    try:
        value = json.loads(body)
    except RecursionError:  # nested deeper than the interpreter's own limit
        raise BodyError("Failed to parse the request body as JSON: recursion limit exceeded", status=400) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(f"Failed to parse the request body as JSON: {exc}", status=400) from None
    if nesting_exceeds(value, MAX_JSON_DEPTH):
        raise BodyError(f"Failed to parse the request body as JSON: recursion limit exceeded "
                        f"(more than {MAX_JSON_DEPTH} nested arrays or objects)", status=400)
    return value


def nesting_exceeds(value: Any, limit: int) -> bool:
    """True if `value` nests lists/dicts more than `limit` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _type_error(path: str, expected: str, value: object) -> BodyError:
    where = f"{path}: " if path else ""
    return BodyError(
        f"Failed to deserialize the JSON body into the target type: {where}"
        f"invalid type: {json.dumps(value)}, expected {expected}"
    )


def _field(raw: Mapping[str, Any], key: str, prefix: str) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    path = f"{prefix}.{key}" if prefix else key
    if key in _BOOL and not isinstance(value, bool):
        raise _type_error(path, "a boolean", value)
    if key in _UINT and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise _type_error(path, "an unsigned integer", value)
    if key in _FLOAT and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _type_error(path, "a number", value)
    return float(value) if key in _FLOAT else value


def _stop_field(raw: Mapping[str, Any], prefix: str) -> tuple[str, ...]:
    stop = raw.get("stop")
    if stop is None:
        return ()
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise _type_error(f"{prefix}.stop" if prefix else "stop", "a sequence of strings", stop)
    return tuple(stop)


def parse_parameters(raw: object, path: str = "parameters") -> GenerateParams:
    """`GenerateParameters` from JSON, with serde's type checks and TGI's defaults."""
    if raw is None:
        return GenerateParams()
    if not isinstance(raw, dict):
        raise _type_error(path, "struct GenerateParameters", raw)
    values = {key: _field(raw, key, path) for key in (*_BOOL, *_UINT, *_FLOAT)}
    kept = {k: v for k, v in values.items() if v is not None}
    return GenerateParams(stop=_stop_field(raw, path), **kept)


def parse_inputs(body: object, key: str = "inputs") -> str:
    if not isinstance(body, dict):
        raise _type_error("", "struct GenerateRequest", body)
    if key not in body:
        raise BodyError(f"Failed to deserialize the JSON body into the target type: missing field `{key}`")
    inputs = body[key]
    if not isinstance(inputs, str):
        raise _type_error(key, "a string", inputs)
    return inputs


def _check_sampling(p: GenerateParams, limits: Limits) -> bool:
    sampling = p.do_sample or any(v is not None for v in (p.temperature, p.top_k, p.top_p, p.typical_p))
    best_of = p.best_of or 1
    if best_of > limits.max_best_of:
        raise ValidationFailed(f"`best_of` must be > 0 and <= {limits.max_best_of}. Given: {best_of}")
    if best_of > 1 and not sampling:
        raise ValidationFailed("you must use sampling when `best_of` is > 1")
    if p.temperature is not None and p.temperature <= 0.0:
        raise ValidationFailed("`temperature` must be strictly positive")
    if p.repetition_penalty is not None and p.repetition_penalty <= 0.0:
        raise ValidationFailed("`repetition_penalty` must be strictly positive")
    if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
        raise ValidationFailed("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and not 0.0 < p.top_p < 1.0:
        raise ValidationFailed("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
        raise ValidationFailed("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        raise ValidationFailed("`top_k` must be strictly positive")
    return sampling


def _check_counts(p: GenerateParams, limits: Limits) -> None:
    if p.max_new_tokens == 0:
        raise ValidationFailed("`max_new_tokens` must be strictly positive")
    if len(p.stop) > limits.max_stop_sequences:
        raise ValidationFailed(
            f"`stop` supports up to {limits.max_stop_sequences} stop sequences. Given: {len(p.stop)}"
        )
    if (p.best_of or 1) > 1 and p.seed is not None:
        raise ValidationFailed("`seed` must not be set when `best_of` > 1")
    if p.top_n_tokens is not None and p.top_n_tokens > limits.max_top_n_tokens:
        raise ValidationFailed(
            f"`top_n_tokens` must be >= 0 and <= {limits.max_top_n_tokens}. Given: {p.top_n_tokens}"
        )


def _check_length(words: list[str], p: GenerateParams, limits: Limits) -> tuple[list[str], int]:
    if p.truncate is not None:
        if p.truncate == 0 or p.truncate > limits.max_input_tokens:
            raise ValidationFailed(
                f"`truncate` must be strictly positive and less than {limits.max_input_tokens}. "
                f"Given: {p.truncate}"
            )
        words = words[-p.truncate:]
    n = len(words)
    # Unset, TGI 3.x lets a request run to the end of its context (the spec's "default 1024"
    # is stale: router/src/validation.rs uses max_total_tokens - input_length).
    budget = max(limits.max_total_tokens - n, 0)
    max_new = p.max_new_tokens if p.max_new_tokens is not None else budget
    if n + max_new > limits.max_total_tokens:
        raise ValidationFailed(
            f"`inputs` tokens + `max_new_tokens` must be <= {limits.max_total_tokens}. "
            f"Given: {n} `inputs` tokens and {max_new} `max_new_tokens`"
        )
    if n > limits.max_input_tokens:
        raise ValidationFailed(f"`inputs` must have less than {limits.max_input_tokens} tokens. Given: {n}")
    return words, max_new


def validate(inputs: str, p: GenerateParams, limits: Limits, rng: random.Random) -> ValidRequest:
    """TGI's `Validation::validate`: same checks, same order, same messages."""
    sampling = _check_sampling(p, limits)
    _check_counts(p, limits)
    seed = p.seed if p.seed is not None else rng.getrandbits(63)
    if not inputs:
        raise ValidationFailed("`inputs` cannot be empty")
    words, max_new = _check_length(tokens.tokenize(inputs), p, limits)
    if not words:
        raise ValidationFailed("`inputs` cannot be empty")
    return ValidRequest(inputs, tuple(words), max_new, p, sampling, seed)


def check_stream(p: GenerateParams) -> None:
    """The extra rules of streaming routes (checked before the permit, as TGI does)."""
    if (p.best_of or 1) != 1:
        raise ValidationFailed("`best_of` != 1 is not supported when streaming tokens")
    if p.decoder_input_details:
        raise ValidationFailed("`decoder_input_details` == true is not supported when streaming tokens")
