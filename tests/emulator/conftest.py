"""Fixtures of the emulator tests: real emulator processes on loopback, TGI's OpenAPI schemas."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator

from daemons.emulator.testing import RunningEmulator, start_emulator

OPENAPI = Path("/work/shared/tgi/openapi.json")

Validate = Callable[[str, Any], None]


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    """One opt-125m instance on an emulated A100, ready at once, shared by a test module."""
    with start_emulator("facebook/opt-125m", "a100-80gb") as emu:
        yield emu


@pytest.fixture(scope="session")
def openapi() -> dict[str, Any]:
    if not OPENAPI.exists():
        pytest.skip(f"TGI's OpenAPI spec is not at {OPENAPI} (it is not shipped in this repository)")
    spec: dict[str, Any] = json.loads(OPENAPI.read_text())
    return spec


def _null_or(node: Any) -> Any:
    """TGI's spec wraps nullable refs as `{allOf: [$ref], nullable: true}`; under OpenAPI 3.0.3
    `nullable` does not reach into `allOf`, so a strict validator refuses the nulls TGI itself
    sends (`"details":null`, `"logprobs":null`).  Read such a wrapper as "the ref, or null"."""
    if isinstance(node, list):
        return [_null_or(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _null_or(v) for k, v in node.items()}
    if out.get("nullable") is True and "allOf" in out and "type" not in out:
        rest = {k: v for k, v in out.items() if k not in ("allOf", "nullable", "default")}
        return {**rest, "anyOf": [{"allOf": out["allOf"]}, {"enum": [None]}]}
    return out


@pytest.fixture(scope="session")
def validate(openapi: dict[str, Any]) -> Validate:
    """validate("GenerateResponse", body): raise unless body matches that component schema."""
    components = _null_or(openapi["components"])

    def check(name: str, instance: Any) -> None:
        assert name in components["schemas"], name
        schema = {"$ref": f"#/components/schemas/{name}", "components": components}
        OAS30Validator(schema).validate(instance)

    return check
