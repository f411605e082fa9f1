"""`backend = "emulator-inproc"`: a real node agent serving its emulated GPU inside its own process,
checked through its socket against the same node over the HTTP emulator (the fidelity path)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from daemons.bus.client import Client
from daemons.core.messages import Done, Infer, StreamToken
from daemons.node.testing import NodeProcess, running_node, schedctl

SMALL = "facebook/opt-125m"
LLAMA2 = "meta-llama/Llama-2-7b-hf"
LLAMA3 = "meta-llama/Llama-3.1-8B-Instruct"
INPROC = {"backend": "emulator-inproc"}


def streamed(client: Client, rid: str, model: str, prompt: str, n: int) -> tuple[list[str], Done]:
    """Send one streamed request; its token texts (in index order) and its Done."""
    client.send(Infer(rid, model, prompt, n, stream=True), rid)
    got = client.until({"done", "error"}, timeout_s=60)
    done = got[-1].body
    assert isinstance(done, Done), done
    tokens = [e.body for e in got if isinstance(e.body, StreamToken)]
    assert [t.index for t in tokens] == list(range(n))
    return [t.text for t in tokens], done


def models_of(client: Client) -> list[tuple[str, str]]:
    return [(m["model"], m["state"]) for m in client.status().nodes[0]["models"]]


def only_process(node: NodeProcess) -> None:
    assert node.children() == [], f"an in-process node started {node.children()}"


def test_a_node_serves_in_process_what_the_http_emulator_serves(tmp_path: Path) -> None:
    prompt = "the quick brown fox jumps over the lazy dog " * 4
    fields = {"models": [SMALL], "checkpoint_tier": "dram"}
    with running_node(tmp_path, "inproc", **fields, **INPROC) as node, Client(node.bind) as client:
        texts, done = streamed(client, "r1", SMALL, prompt, 12)
        assert (done.action, done.tokens, done.finish_reason) == ("COLD_START", 12, "length")
        again, second = streamed(client, "r2", SMALL, prompt, 12)
        assert second.action == "SERVE" and again == texts  # greedy: the prompt seeds the words
        assert models_of(client) == [(SMALL, "ready")]
        only_process(node)
    with running_node(tmp_path, "http", **fields) as node, Client(node.bind) as client:
        over_http, done_http = streamed(client, "r1", SMALL, prompt, 12)
        assert len(node.children()) == 1  # the emulator process
    # The same engine: the same words, the same finish, the same accounting.
    assert over_http == texts
    assert (done_http.action, done_http.tokens, done_http.finish_reason) == (done.action, 12, "length")
    assert set(done_http.timings) == set(done.timings)


def test_an_in_process_node_evicts_the_idle_model_to_load_another(tmp_path: Path) -> None:
    # An A10G holds one 7-8B model at a time: the second model's load evicts the first.
    fields = {"models": [LLAMA2, LLAMA3], "gpu": "a10g-24gb", "checkpoint_tier": "gpu", "kv_tokens": 4096}
    with running_node(tmp_path, **fields, **INPROC) as node, Client(node.bind) as client:
        _, first = streamed(client, "r1", LLAMA2, "one two three", 4)
        _, second = streamed(client, "r2", LLAMA3, "one two three", 4)
        assert (first.action, second.action) == ("COLD_START", "COLD_START")
        assert models_of(client) == [(LLAMA3, "ready")]
        assert "evicting " + LLAMA2 in node.log()
        only_process(node)


def test_state_carries_the_in_process_engine_load(tmp_path: Path) -> None:
    # Queue and busy ratio are read from the engine itself (no /metrics to scrape).
    with running_node(tmp_path, models=[LLAMA3], checkpoint_tier="gpu", **INPROC) as node, \
            Client(node.bind) as client:
        for k in range(6):
            client.send(Infer(f"r{k}", LLAMA3, "word " * 1500, 60), f"r{k}")
        busiest = 0.0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            busiest = max(busiest, client.status().nodes[0]["gpus"][0]["utilization"])
            if busiest > 0:
                break
            time.sleep(0.2)
        assert busiest > 0, node.log()[-2000:]


def test_an_unknown_backend_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n"\nbackend = "emulator-inprocess"\n')
    out = subprocess.run([schedctl(), "start", "node", "--config", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "emulator-inproc" in out.stderr and "'emulator-inprocess'" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_launcher_with_the_inproc_backend_is_refused_not_ignored(tmp_path: Path) -> None:
    # Its flags (say --max-concurrent-requests 1) would never reach the in-process engine.
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nname = "n"\nbackend = "emulator-inproc"\n'
                   'launcher = ["schedctl", "start", "emulator", "--port", "{port}", '
                   '"--max-concurrent-requests", "1"]\n')
    out = subprocess.run([schedctl(), "start", "node", "--config", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "launcher" in out.stderr and 'backend = "emulator"' in out.stderr and "Traceback" not in out.stderr
