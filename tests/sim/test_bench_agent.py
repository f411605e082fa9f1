"""`scripts/bench_agent.py --quick`: real agents on loopback, every figure the simulator's
AgentCosts come from, ending with one line of JSON; and a bad argument is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(150)  # two node agents and an emulator start on a shared 2-core machine
def test_quick_bench_measures_each_agent_cost_against_the_baseline() -> None:
    out = subprocess.run([sys.executable, "scripts/bench_agent.py", "--quick"], cwd=REPO, capture_output=True,
                         text=True, timeout=140)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert not any(line.lstrip().startswith("{") for line in lines[:-1])
    assert figures["requests_per_phase"] == 60 and figures["long_requests"] == 5
    # every forwarded request went through node-0 to node-1 (the bench checks each Done), so a
    # forward costs node-0 CPU and the serving agent more than relaying one frame does
    assert figures["serve_us"] > 0 and figures["forward_us"] > 0
    assert figures["forwarded_ttft_p50_ms"] > 0 and figures["direct_ttft_p50_ms"] > 0
    assert figures["echo_rtt_p50_ms"] > 0 and "x echo" in out.stdout and "baseline" in out.stdout
    for key in ("place_us", "relay_us", "token_us", "first_forward_extra_ms"):
        assert isinstance(figures[key], float)


def test_a_bad_argument_is_one_line() -> None:
    out = subprocess.run([sys.executable, "scripts/bench_agent.py", "--long-tokens", "1"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--long-tokens" in out.stderr and "Traceback" not in out.stderr
