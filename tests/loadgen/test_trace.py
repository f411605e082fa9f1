"""Trace replay and trace-sampled lengths from Azure-format CSVs, and malformed traces."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemons.core.errors import ConfigError
from daemons.loadgen import WorkloadSpec, parse_length, plan
from daemons.loadgen.trace import read_trace

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:51.0072870,879,0
2023-11-16 18:15:55.5000000,91,13
2023-11-16 18:16:46.6805900,1200,250
"""


@pytest.fixture
def azure(tmp_path: Path) -> Path:
    path = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    path.write_text(AZURE)
    return path


def test_replay_uses_the_trace_times_relative_to_the_first_row(azure: Path) -> None:
    schedule = plan(WorkloadSpec(trace=str(azure), duration_s=0, models=("m",)))
    assert [r.t_s for r in schedule] == pytest.approx([0.0, 4.314579, 4.326697, 8.81941, 60.0], abs=1e-6)
    assert [r.prompt_tokens for r in schedule] == [374, 396, 879, 91, 1200]
    # A trace may record 0 generated tokens; every request asks for at least one.
    assert [r.max_new_tokens for r in schedule] == [44, 109, 1, 13, 250]


def test_replay_stops_at_duration_and_honours_speedup(azure: Path) -> None:
    assert len(plan(WorkloadSpec(trace=str(azure), duration_s=10))) == 4
    fast = plan(WorkloadSpec(trace=str(azure), duration_s=10, trace_speedup=2.0))
    assert len(fast) == 4 and fast[-1].t_s == pytest.approx(8.81941 / 2, abs=1e-6)


def test_replay_with_overridden_lengths(azure: Path) -> None:
    schedule = plan(WorkloadSpec(trace=str(azure), duration_s=0, output_tokens=parse_length(16, "o")))
    assert [r.max_new_tokens for r in schedule] == [16] * 5
    assert [r.prompt_tokens for r in schedule] == [374, 396, 879, 91, 1200]


def test_gamma_arrivals_with_lengths_sampled_from_the_trace(azure: Path) -> None:
    spec = WorkloadSpec(trace=str(azure), arrivals="gamma", duration_s=100, rps=5, seed=3,
                        prompt_tokens=parse_length("trace", "p"), output_tokens=parse_length("trace", "o"))
    schedule = plan(spec)
    assert len(schedule) == 500
    rows = {(374, 44), (396, 109), (879, 1), (91, 13), (1200, 250)}
    # Prompt and output come from the same row, keeping the trace's correlation.
    assert {(r.prompt_tokens, r.max_new_tokens) for r in schedule} == rows
    assert plan(spec) == schedule


def test_numeric_seconds_and_vidur_columns(tmp_path: Path) -> None:
    path = tmp_path / "splitwise_conv.csv"
    path.write_text("arrived_at,num_prefill_tokens,num_decode_tokens\n10.5,100,5\n11.0,200,6\n")
    trace = read_trace(path)
    assert list(trace.t_s) == [0.0, 0.5]
    assert list(trace.context_tokens) == [100, 200]


def test_utc_offsets_and_bom_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "week.csv"
    path.write_text("\ufeffTIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2024-05-10 00:00:00.009930+00:00,10,1\n2024-05-10 00:00:01.009930+00:00,20,2\n")
    assert list(read_trace(path).t_s) == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize(("text", "match"), [
    ("", "empty; expected a header TIMESTAMP,ContextTokens,GeneratedTokens"),
    ("time,in,out\n1,2,3\n", "line 1.*lacks the trace columns.*TIMESTAMP,ContextTokens,GeneratedTokens"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no data rows"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\nyesterday,1,1\n", "line 3: timestamp 'yesterday'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n1,many,1\n", "line 3: ContextTokens 'many'"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n1,1,-4\n", "line 3: GeneratedTokens is negative"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n5,1,1\n4,1,1\n", "line 3: time goes backwards; sort"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n5,1\n", "line 2: 2 fields"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n5,1,1\n2023-11-16 18:15:46,1,1\n", "line 3: timestamps mix formats"),
])
def test_malformed_traces_name_file_line_and_fix(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        plan(WorkloadSpec(trace=str(path), duration_s=0))
    assert str(path) in str(info.value)


def test_missing_trace_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; give the path"):
        plan(WorkloadSpec(trace=str(tmp_path / "nope.csv")))
