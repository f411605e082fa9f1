"""TGI's wire protocol, byte for byte, against a real emulator process (TGI router/src/server.rs)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from daemons.emulator.testing import RunningEmulator
from tests.emulator.conftest import Validate

PROMPT = "The quick brown fox jumps over the lazy dog"
TIMING_HEADERS = ("x-compute-type", "x-compute-time", "x-compute-characters", "x-total-time",
                  "x-validation-time", "x-queue-time", "x-inference-time", "x-time-per-token",
                  "x-prompt-tokens", "x-generated-tokens")


@pytest.fixture(scope="module")
def http(emulator: RunningEmulator) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=emulator.base_url, timeout=30) as client:
        yield client


def sse_events(raw: bytes) -> list[bytes]:
    """Split an SSE body into event payloads, checking the framing on the way."""
    assert raw.endswith(b"\n\n")
    events = raw[:-2].split(b"\n\n")
    for e in events:
        assert e.startswith(b"data:"), e
    return [e[len(b"data:"):] for e in events]


def post_raw(http: httpx2.Client, path: str, body: dict[str, Any]) -> httpx2.Response:
    with http.stream("POST", path, json=body) as resp:
        resp.read()
        return resp


# -- probes and descriptions --------------------------------------------------------------

def test_health_ping_and_get_root(http: httpx2.Client) -> None:
    for path in ("/health", "/ping", "/"):
        resp = http.get(path)
        assert resp.status_code == 200 and resp.content == b""


def test_info(http: httpx2.Client, validate: Validate) -> None:
    info = http.get("/info").json()
    validate("Info", info)
    assert info["model_id"] == "facebook/opt-125m"
    assert info["router"] == "text-generation-router"
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (2047, 2048)
    assert info["max_concurrent_requests"] == 128


def test_models_is_a_list(http: httpx2.Client, validate: Validate) -> None:
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    [card] = body["data"]
    validate("ModelInfo", card)
    assert card == {"id": "facebook/opt-125m", "object": "model", "created": 0, "owned_by": "facebook/opt-125m"}


def test_tokenize_shows_one_token_per_word(http: httpx2.Client, validate: Validate) -> None:
    spans = http.post("/tokenize", json={"inputs": "Hello  big\nworld"}).json()
    validate("TokenizeResponse", spans)
    assert [(s["text"], s["start"], s["stop"]) for s in spans] == [("Hello", 0, 5), ("big", 7, 10),
                                                                  ("world", 11, 16)]


# -- non-stream generation ----------------------------------------------------------------

def test_generate(http: httpx2.Client, validate: Validate) -> None:
    resp = http.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 7}})
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    validate("GenerateResponse", body)
    assert not body["generated_text"].startswith(PROMPT)
    details = body["details"]
    assert (details["finish_reason"], details["generated_tokens"], details["seed"]) == ("length", 7, None)
    assert len(details["tokens"]) == 7 and details["prefill"] == []
    assert "".join(t["text"] for t in details["tokens"]) == body["generated_text"]
    for name in TIMING_HEADERS:
        assert name in resp.headers, name
    assert resp.headers["x-prompt-tokens"] == "9" and resp.headers["x-generated-tokens"] == "7"
    assert resp.headers["x-compute-characters"] == str(len(PROMPT))
    assert float(resp.headers["x-compute-time"]) > 0


def test_compat_root_returns_an_array_with_the_prompt_prepended(http: httpx2.Client, validate: Validate) -> None:
    resp = http.post("/", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3}})
    [body] = resp.json()
    validate("GenerateResponse", body)
    assert body["generated_text"].startswith(PROMPT) and len(body["generated_text"]) > len(PROMPT)
    assert "x-inference-time" in resp.headers
    [plain] = http.post("/", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 3,
                                                                    "return_full_text": False}}).json()
    assert plain["generated_text"] == body["generated_text"][len(PROMPT):]


def test_details_false_drops_details(http: httpx2.Client, validate: Validate) -> None:
    body = http.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2,
                                                                         "details": False}}).json()
    validate("GenerateResponse", body)
    assert set(body) == {"generated_text"}


def test_decoder_input_details_top_n_and_sampling_seed(http: httpx2.Client, validate: Validate) -> None:
    params = {"max_new_tokens": 3, "decoder_input_details": True, "top_n_tokens": 2, "do_sample": True,
              "seed": 42}
    body = http.post("/generate", json={"inputs": PROMPT, "parameters": params}).json()
    validate("GenerateResponse", body)
    details = body["details"]
    assert [p["text"].strip() for p in details["prefill"]] == PROMPT.split()
    assert details["prefill"][0]["logprob"] is None
    assert details["seed"] == 42
    assert len(details["top_tokens"]) == 3 and all(len(t) == 2 for t in details["top_tokens"])


def test_best_of_returns_the_other_sequences(http: httpx2.Client, validate: Validate) -> None:
    params = {"max_new_tokens": 4, "best_of": 2, "do_sample": True}
    body = http.post("/generate", json={"inputs": PROMPT, "parameters": params}).json()
    validate("GenerateResponse", body)
    [other] = body["details"]["best_of_sequences"]
    validate("BestOfSequence", other)


# -- streams ------------------------------------------------------------------------------

def check_generate_stream(resp: httpx2.Response, validate: Validate, n: int) -> dict[str, Any]:
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    assert "x-compute-type" in resp.headers and "x-compute-characters" in resp.headers
    payloads = sse_events(resp.content)
    assert b"[DONE]" not in resp.content
    events = [json.loads(p) for p in payloads]
    assert all(not p.startswith(b" ") for p in payloads)  # `data:{`, never `data: {`
    assert all(p == json.dumps(e, separators=(",", ":"), ensure_ascii=False).encode()
               for p, e in zip(payloads, events, strict=True))
    assert [e["index"] for e in events] == list(range(1, n + 1))
    for e in events:
        validate("StreamResponse", e)
        assert "top_tokens" not in e
    for e in events[:-1]:
        assert e["generated_text"] is None and e["details"] is None
    final = events[-1]
    validate("StreamDetails", final["details"])
    assert final["details"] == {"finish_reason": "length", "generated_tokens": n, "seed": None,
                                "input_length": len(PROMPT.split())}
    return final


def test_generate_stream_bytes(http: httpx2.Client, validate: Validate) -> None:
    resp = post_raw(http, "/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": 5}})
    final = check_generate_stream(resp, validate, 5)
    assert not final["generated_text"].startswith(PROMPT)


def test_compat_root_stream_prepends_the_prompt(http: httpx2.Client, validate: Validate) -> None:
    resp = post_raw(http, "/", {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}, "stream": True})
    final = check_generate_stream(resp, validate, 4)
    assert final["generated_text"].startswith(PROMPT)


def test_stream_text_matches_non_stream_text(http: httpx2.Client) -> None:
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 6}}
    streamed = json.loads(sse_events(post_raw(http, "/generate_stream", body).content)[-1])
    assert streamed["generated_text"] == http.post("/generate", json=body).json()["generated_text"]


def test_stream_errors_are_in_band(http: httpx2.Client, validate: Validate) -> None:
    cases = [
        ({"temperature": 0.0}, "Input validation error: `temperature` must be strictly positive"),
        ({"best_of": 2, "do_sample": True}, "Input validation error: `best_of` != 1 is not supported when "
                                            "streaming tokens"),
        ({"decoder_input_details": True}, "Input validation error: `decoder_input_details` == true is not "
                                          "supported when streaming tokens"),
    ]
    for params, message in cases:
        resp = post_raw(http, "/generate_stream", {"inputs": PROMPT, "parameters": params})
        assert resp.status_code == 200
        [payload] = sse_events(resp.content)
        error = json.loads(payload)
        validate("ErrorResponse", error)
        assert error == {"error": message, "error_type": "validation"}


def test_chat_completion(http: httpx2.Client, validate: Validate) -> None:
    body = {"model": "tgi", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 5}
    resp = http.post("/v1/chat/completions", json=body)
    chat = resp.json()
    validate("ChatCompletion", chat)
    assert chat["object"] == "chat.completion" and chat["model"] == "facebook/opt-125m"
    [choice] = chat["choices"]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] == "length"
    assert chat["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    assert "x-inference-time" in resp.headers
    body["model"] = "my-model"
    assert http.post("/v1/chat/completions", json=body).json()["model"] == "my-model"


def test_chat_stream_ends_with_done(http: httpx2.Client, validate: Validate) -> None:
    body = {"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 3, "stream": True,
            "stream_options": {"include_usage": True}}
    resp = post_raw(http, "/v1/chat/completions", body)
    assert resp.status_code == 200 and resp.headers["content-type"] == "text/event-stream"
    assert resp.content.endswith(b"\n\ndata: [DONE]\n\n")
    payloads = sse_events(resp.content)
    assert payloads[-1] == b" [DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for c in chunks:
        validate("ChatCompletionChunk", c)
        assert c["object"] == "chat.completion.chunk"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "length"]
    # TGI puts the usage on the last token's chunk (not a chunk of its own)
    assert [c["usage"] for c in chunks[:2]] == [None, None] and chunks[2]["usage"]["completion_tokens"] == 3


def test_chat_stream_error_is_openai_style(http: httpx2.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0, "stream": True}
    resp = post_raw(http, "/v1/chat/completions", body)
    assert resp.status_code == 200
    payloads = sse_events(resp.content)
    assert json.loads(payloads[0]) == {"error": {"message": "Input validation error: `max_new_tokens` must be "
                                                 "strictly positive", "http_status_code": 422}}
    assert payloads[1] == b" [DONE]"


def test_completions(http: httpx2.Client, validate: Validate) -> None:
    body = {"prompt": ["one two", "three four five"], "max_tokens": 3}
    final = http.post("/v1/completions", json=body).json()
    validate("CompletionFinal", final)
    assert [c["index"] for c in final["choices"]] == [0, 1]
    assert final["usage"]["prompt_tokens"] == 5
    resp = post_raw(http, "/v1/completions", {**body, "stream": True})
    payloads = sse_events(resp.content)
    assert payloads[-1] == b" [DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert len(chunks) == 6
    for c in chunks:
        validate("Chunk", c)
    assert sorted(c["choices"][0]["finish_reason"] for c in chunks).count("length") == 2


# -- errors on non-stream routes ----------------------------------------------------------

@pytest.mark.parametrize(
    ("inputs", "params", "message"),
    [
        (PROMPT, {"temperature": 0.0}, "`temperature` must be strictly positive"),
        (PROMPT, {"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        (PROMPT, {"top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
        (PROMPT, {"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
        (PROMPT, {"best_of": 2}, "you must use sampling when `best_of` is > 1"),
        ("", {}, "`inputs` cannot be empty"),
        ("word " * 3000, {}, "`inputs` tokens + `max_new_tokens` must be <= 2048. Given: 3000 `inputs` tokens "
                             "and 0 `max_new_tokens`"),
        ("word " * 2000, {"max_new_tokens": 100}, "`inputs` tokens + `max_new_tokens` must be <= 2048. "
                                                  "Given: 2000 `inputs` tokens and 100 `max_new_tokens`"),
        ("word " * 2048, {}, "`inputs` must have less than 2047 tokens. Given: 2048"),
    ],
)
def test_validation_errors(http: httpx2.Client, validate: Validate, inputs: str, params: dict[str, Any],
                           message: str) -> None:
    resp = http.post("/generate", json={"inputs": inputs, "parameters": params})
    assert resp.status_code == 422
    body = resp.json()
    validate("ErrorResponse", body)
    assert body == {"error": f"Input validation error: {message}", "error_type": "validation"}


def test_malformed_bodies_get_plain_text(http: httpx2.Client) -> None:
    resp = http.post("/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/plain")
    resp = http.post("/generate", json={"inputs": 3})
    assert resp.status_code == 422 and "invalid type" in resp.text
    resp = http.post("/generate", json={"inputs": "a", "parameters": {"max_new_tokens": -1}})
    assert resp.status_code == 422 and "max_new_tokens" in resp.text
    resp = http.post("/generate", content=b'{"inputs":"a"}', headers={"content-type": "text/plain"})
    assert resp.status_code == 415


# -- metrics ------------------------------------------------------------------------------

def test_metrics_names_follow_tgi(http: httpx2.Client) -> None:
    http.post("/generate", json={"inputs": PROMPT, "parameters": {"max_new_tokens": 2}})
    text = http.get("/metrics").text
    lines = text.splitlines()
    for gauge in ("tgi_queue_size", "tgi_batch_current_size", "tgi_batch_current_max_tokens",
                  "tgi_batch_max_total_tokens"):
        assert f"# TYPE {gauge} gauge" in lines
    for counter in ("tgi_request_count", "tgi_request_success"):
        assert f"# TYPE {counter} counter" in lines
    assert 'tgi_request_failure{err="validation"}' in text and 'tgi_request_failure{err="overloaded"}' in text
    assert not [ln for ln in lines if re.match(r"^[a-z_]+_total[{ ]", ln)]  # counters carry no _total
    for hist in ("tgi_request_duration", "tgi_request_queue_duration", "tgi_request_inference_duration",
                 "tgi_request_validation_duration", "tgi_request_mean_time_per_token_duration"):
        buckets = [ln for ln in lines if ln.startswith(f"{hist}_bucket")]
        assert len(buckets) == 36, hist  # 35 bounds + +Inf
        assert buckets[0].startswith(f'{hist}_bucket{{le="0.00015')
        assert buckets[-1].startswith(f'{hist}_bucket{{le="+Inf"}}')
    success = next(ln for ln in lines if ln.startswith("tgi_request_success "))
    assert int(success.split()[1]) >= 1
