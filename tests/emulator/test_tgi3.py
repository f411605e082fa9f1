"""Where benchmark tools look, the emulator answers as TGI 3.x does: one test per difference.

Driven by the official `openai` client (as benchmark tools drive TGI's OpenAI routes) and by
plain HTTP for /generate and /metrics. Sources: TGI `router/src/server.rs` (`completions`,
`create_event_from_stream_token`), `router/src/validation.rs` (default max_new_tokens),
`assets/tgi_grafana.json` (the series its dashboard queries).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx2
import pytest
from openai import OpenAI

from daemons.emulator.testing import RunningEmulator, start_emulator

MESSAGES = [{"role": "user", "content": "Say hello to the world"}]
#: Every series TGI's own Grafana dashboard (assets/tgi_grafana.json) queries.
GRAFANA_SERIES = (
    "tgi_request_queue_duration_bucket", "tgi_batch_inference_duration_bucket", "tgi_batch_forward_duration_bucket",
    "tgi_request_generated_tokens_sum", "tgi_request_generated_tokens_count", "tgi_request_generated_tokens_bucket",
    "tgi_request_input_length_bucket", "tgi_request_success", "tgi_request_failure",
    "tgi_request_mean_time_per_token_duration_bucket", "tgi_request_count", "tgi_queue_size",
    "tgi_batch_current_max_tokens", "tgi_request_skipped_tokens_bucket", "tgi_request_duration_bucket",
    "tgi_batch_current_size", "tgi_batch_concat", "tgi_batch_decode_duration_bucket",
    "tgi_batch_filter_duration_bucket", "tgi_batch_concat_duration_bucket",
)


@pytest.fixture(scope="module")
def small() -> Iterator[RunningEmulator]:
    """An instance with a short context (64 tokens), so "run to the end" is quick to check."""
    with start_emulator("facebook/opt-125m", extra_args=["--max-total-tokens", "64", "--max-input-tokens", "32"]) \
            as emu:
        yield emu


def openai_client(emu: RunningEmulator) -> OpenAI:
    return OpenAI(base_url=f"{emu.base_url}/v1", api_key="unused", max_retries=0, timeout=30)


def scrape(emu: RunningEmulator) -> dict[str, float]:
    """Unlabelled and labelled samples of /metrics, keyed by the sample's full name."""
    out = {}
    for line in httpx2.get(f"{emu.base_url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_chat_honours_max_completion_tokens(emulator: RunningEmulator) -> None:
    chat = openai_client(emulator).chat.completions.create(model="tgi", messages=MESSAGES, max_completion_tokens=3)
    assert chat.usage is not None and chat.usage.completion_tokens == 3
    assert chat.choices[0].finish_reason == "length"


def test_chat_returns_logprobs_when_asked(emulator: RunningEmulator) -> None:
    client = openai_client(emulator)
    chat = client.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=4, logprobs=True,
                                          top_logprobs=2)
    content = chat.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 4
    assert "".join(t.token for t in content) == chat.choices[0].message.content
    for t in content:
        assert t.logprob <= 0 and len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob == t.logprob
    stream = client.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=3, logprobs=True,
                                            stream=True)
    per_token = [c.choices[0].logprobs.content for c in stream if c.choices]  # type: ignore[union-attr]
    assert len(per_token) == 3 and all(lp is not None and len(lp) == 1 for lp in per_token)
    plain = client.chat.completions.create(model="tgi", messages=MESSAGES, max_tokens=2)
    assert plain.choices[0].logprobs is None  # not asked: none, as TGI


def test_a_request_without_a_length_runs_to_max_total_tokens(small: RunningEmulator) -> None:
    chat = openai_client(small).chat.completions.create(model="tgi", messages=MESSAGES)
    assert chat.usage is not None
    assert chat.usage.prompt_tokens + chat.usage.completion_tokens == 64  # not capped at 1,024 or anything else
    body = httpx2.post(f"{small.base_url}/generate", json={"inputs": "one two three"}, timeout=30).json()
    assert body["details"]["generated_tokens"] == 64 - 3


def test_completions_stream_ends_with_usage(emulator: RunningEmulator) -> None:
    chunks = list(openai_client(emulator).completions.create(model="tgi", prompt="one two three four",
                                                             max_tokens=5, stream=True))
    assert [c.usage for c in chunks[:-1]] == [None] * 4  # usage comes with the choice's final event only
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 5)
    assert chunks[-1].choices[0].finish_reason == "length"


def test_best_of_counts_once_in_every_series(emulator: RunningEmulator) -> None:
    before = scrape(emulator)
    body = {"inputs": "tell me a story", "parameters": {"best_of": 2, "do_sample": True, "max_new_tokens": 4}}
    resp = httpx2.post(f"{emulator.base_url}/generate", json=body, timeout=30)
    assert len(resp.json()["details"]["best_of_sequences"]) == 1
    after = scrape(emulator)
    for series in ("tgi_request_count", "tgi_request_success", "tgi_request_duration_count",
                   "tgi_request_generated_tokens_count", "tgi_request_input_length_count",
                   "tgi_request_queue_duration_count", "tgi_request_skipped_tokens_count"):
        assert after[series] - before.get(series, 0) == 1, series


def test_metrics_have_help_type_and_every_grafana_series(emulator: RunningEmulator) -> None:
    openai_client(emulator).completions.create(model="tgi", prompt="a b c", max_tokens=2)
    text = httpx2.get(f"{emulator.base_url}/metrics", timeout=10).text
    helped = set(re.findall(r"^# HELP (\S+) \S", text, flags=re.M))
    typed = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    samples = {re.split(r"[{ ]", ln, maxsplit=1)[0] for ln in text.splitlines() if ln and not ln.startswith("#")}
    families = {re.sub(r"_(bucket|sum|count)$", "", s) if re.sub(r"_(bucket|sum|count)$", "", s) in typed else s
                for s in samples}
    assert families <= helped and families <= set(typed), families - helped
    missing = [s for s in GRAFANA_SERIES if s not in samples]
    assert not missing, missing
    assert 'tgi_batch_inference_duration_count{method="prefill"}' in text


def test_busy_ratio_follows_the_engine(small: RunningEmulator) -> None:
    def busy() -> float:
        return scrape(small)["schedctl_emulator_busy_ratio"]

    deadline = time.monotonic() + 20
    while busy() > 0.0 and time.monotonic() < deadline:  # idle: nothing ran in the last second
        time.sleep(0.2)
    assert busy() == 0.0
    worker = threading.Thread(target=lambda: [httpx2.post(f"{small.base_url}/generate", timeout=60, json={
        "inputs": "one two", "parameters": {"max_new_tokens": 60}}) for _ in range(3)])
    worker.start()
    seen = []
    while worker.is_alive():
        seen.append(busy())
        time.sleep(0.1)
    worker.join()
    assert max(seen) > 0.0 and all(0.0 <= b <= 1.0 for b in seen), seen
