"""The real huggingface_hub client against an emulator started by `schedctl start emulator`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from huggingface_hub import AsyncInferenceClient, constants
from huggingface_hub.errors import OverloadedError, ValidationError

from daemons.emulator.testing import RunningEmulator, start_emulator

PROMPT = "Once upon a time there was"
# Nothing listens on the discard port: a call meant for the Hub fails at once, on loopback.
NO_HUB = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def hub_client_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub (2.x) refuses every request of its default client in offline mode, the
    emulator's on loopback included, and online it may ask the Hub for a registry of agent
    harnesses when it builds a user-agent. So: online, with the Hub's endpoint on loopback."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", NO_HUB)


@pytest.fixture
async def client(emulator: RunningEmulator) -> AsyncIterator[AsyncInferenceClient]:
    async with AsyncInferenceClient(model=emulator.base_url, timeout=30) as c:
        yield c


async def test_stream_tokens_with_details(client: AsyncInferenceClient) -> None:
    outputs = [o async for o in await client.text_generation(PROMPT, max_new_tokens=6, stream=True, details=True)]
    assert [o.index for o in outputs] == [1, 2, 3, 4, 5, 6]
    assert all(o.details is None for o in outputs[:-1])
    final = outputs[-1]
    assert final.details is not None
    assert final.details.finish_reason == "length"
    assert (final.details.generated_tokens, final.details.input_length) == (6, 6)
    # The client posts to `/`, where return_full_text defaults to true.
    assert final.generated_text == PROMPT + "".join(o.token.text for o in outputs)


async def test_stream_plain_tokens(client: AsyncInferenceClient) -> None:
    tokens = [t async for t in await client.text_generation(PROMPT, max_new_tokens=3, stream=True)]
    assert len(tokens) == 3 and all(isinstance(t, str) and t.startswith(" ") for t in tokens)


async def test_non_stream_text_generation(client: AsyncInferenceClient) -> None:
    text = await client.text_generation(PROMPT, max_new_tokens=4)
    assert isinstance(text, str) and text.startswith(PROMPT)
    out = await client.text_generation(PROMPT, max_new_tokens=4, details=True, return_full_text=False,
                                       stop=["never-generated"])
    assert out.details is not None and out.details.finish_reason == "length"
    assert len(out.details.tokens) == 4
    assert out.generated_text == "".join(t.text for t in out.details.tokens)


async def test_chat_completion(client: AsyncInferenceClient) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    out = await client.chat_completion(messages, max_tokens=5)
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content and out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 5


async def test_chat_completion_stream(client: AsyncInferenceClient) -> None:
    messages = [{"role": "user", "content": "Hello there"}]
    chunks = [c async for c in await client.chat_completion(messages, max_tokens=4, stream=True)]
    assert len(chunks) == 4
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, "length"]
    assert "".join(c.choices[0].delta.content or "" for c in chunks).strip()


async def test_validation_error_maps_to_client_exception(client: AsyncInferenceClient) -> None:
    with pytest.raises(ValidationError, match="max_new_tokens"):
        await client.text_generation(PROMPT, max_new_tokens=0)


@pytest.fixture(scope="module")
def slow_emulator() -> Iterator[RunningEmulator]:
    """One permit and ~32 ms steps (Llama-3.1-8B on an A10G): easy to overload."""
    with start_emulator("meta-llama/Llama-3.1-8B-Instruct", "a10g-24gb",
                        extra_args=["--max-concurrent-requests", "1"]) as emu:
        yield emu


async def test_overload_raises_while_streaming_and_on_the_call(slow_emulator: RunningEmulator) -> None:
    async with AsyncInferenceClient(model=slow_emulator.base_url, timeout=30) as client:
        busy = await client.text_generation(PROMPT, max_new_tokens=40, stream=True, details=True)
        first = await anext(busy)  # the permit is held from here on
        assert first.index == 1
        refused = await client.text_generation(PROMPT, max_new_tokens=5, stream=True)
        with pytest.raises(OverloadedError, match="Model is overloaded"):
            await anext(refused)  # HTTP 200 already: the error arrives in-band
        with pytest.raises(OverloadedError):
            await client.text_generation(PROMPT, max_new_tokens=5)
        rest = [o async for o in busy]
        assert rest[-1].details is not None and rest[-1].details.generated_tokens == 40
        await asyncio.sleep(0.1)
        assert await client.text_generation(PROMPT, max_new_tokens=2)
