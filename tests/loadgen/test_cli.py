"""`schedctl loadgen plan` and `schedctl start loadgen`, driven through Typer as cli/main.py registers them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cli.loadgen import loadgen_app, start_loadgen
from daemons.loadgen import read_schedule_csv
from daemons.loadgen.sink import running_sink
from daemons.rundir import REQUEST_COLUMNS

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
start_app = typer.Typer(no_args_is_help=True)
start_app.command("loadgen")(start_loadgen)
app.add_typer(start_app, name="start")
app.add_typer(loadgen_app, name="loadgen")
runner = CliRunner()


def invoke(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and match in err, err


def test_plan_writes_the_schedule(tmp_path: Path) -> None:
    out = tmp_path / "schedule.csv"
    code, stdout, err = invoke("loadgen", "plan", "--duration", "20", "--rps", "5", "--cv", "8", "--seed", "3",
                               "--models", "a,b,c", "--zipf", "1.2", "--prompt-tokens", "uniform:8-16",
                               "--output-tokens", "4", "-o", out)
    assert code == 0 and "wrote 100 requests" in stdout
    assert err.startswith("no profile for a, b, c:")  # no context known: said, lengths kept
    schedule = read_schedule_csv(out)
    assert len(schedule) == 100 and {r.model for r in schedule} <= {"a", "b", "c"}
    assert all(8 <= r.prompt_tokens <= 16 and r.max_new_tokens == 4 for r in schedule)
    # The same flags give the same file.
    again = tmp_path / "again.csv"
    invoke("loadgen", "plan", "--duration", "20", "--rps", "5", "--cv", "8", "--seed", "3", "--models", "a,b,c",
           "--zipf", "1.2", "--prompt-tokens", "uniform:8-16", "--output-tokens", "4", "-o", again)
    assert again.read_bytes() == out.read_bytes()


def test_plan_replays_a_trace(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.6805900,396,109\n")
    code, _, err = invoke("loadgen", "plan", "--trace", trace, "--duration", "0", "-o", tmp_path / "s.csv")
    assert (code, err) == (0, "")
    assert [(r.t_s, r.prompt_tokens) for r in read_schedule_csv(tmp_path / "s.csv")] == [(0.0, 374), (1.0, 396)]


@pytest.mark.parametrize(("args", "match"), [
    (["--rps", "0"], "pass --rps RATE"),
    (["--cv", "-2"], "cv -2.0"),
    (["--prompt-tokens", "lots"], "--prompt-tokens: cannot read 'lots'"),
    (["--zipf", "1", "--weights", "1"], "pass only one"),
    (["--models", "a,b", "--weights", "1,x"], "--weights '1,x'"),
    (["--trace", "/nonexistent/trace.csv"], "trace file /nonexistent/trace.csv not found"),
    (["-o", "/nonexistent/dir/s.csv"], "cannot write /nonexistent/dir/s.csv"),
])
def test_plan_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], match: str) -> None:
    if "-o" not in args:
        args = [*args, "-o", str(tmp_path / "s.csv")]
    code, _, err = invoke("loadgen", "plan", *args)
    assert_one_line_error(code, err, match)


def test_malformed_trace_through_the_cli_names_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n1,one,1\n")
    code, _, err = invoke("loadgen", "plan", "--trace", trace, "-o", tmp_path / "s.csv")
    assert_one_line_error(code, err, f"{trace} line 3: ContextTokens 'one' is not a token count")


def test_start_loadgen_sends_a_schedule_and_writes_records(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.csv"
    invoke("loadgen", "plan", "--duration", "1", "--rps", "40", "--prompt-tokens", "8", "--output-tokens", "2",
           "-o", schedule)
    out = tmp_path / "requests.csv"
    with running_sink() as sink:
        code, stdout, err = invoke("start", "loadgen", "--schedule", schedule, "--coordinator", sink.endpoint,
                                   "--out", out, "--timeout", "5")
    assert code == 0, err
    assert "40 requests: 40 ok, 0 error, 0 timeout" in stdout
    assert "sent 40/40" in err  # progress lines go to stderr
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == REQUEST_COLUMNS and len(rows) == 40
    assert {row["status"] for row in rows} == {"ok"}
    summary = json.loads((tmp_path / "requests.summary.json").read_text())
    assert summary["ok"] == 40 and summary["t0_wall_s"] > 1.6e9


def test_start_loadgen_gossip_with_workload_flags(tmp_path: Path) -> None:
    out = tmp_path / "requests.csv"
    with running_sink() as a, running_sink() as b:
        code, stdout, err = invoke("start", "loadgen", "--entry", a.endpoint, "--entry", b.endpoint, "--duration",
                                   "0.5", "--rps", "20", "--prompt-tokens", "8", "--output-tokens", "2",
                                   "--out", out, "--quiet")
    assert code == 0, err
    assert "10 requests: 10 ok" in stdout and err == ""


def test_start_loadgen_reads_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "schedctl.toml"
    out = tmp_path / "requests.csv"
    with running_sink() as sink:
        config.write_text(f'[loadgen]\nmode = "centralized"\ncoordinator = "{sink.endpoint}"\ntimeout_s = 5\n')
        code, stdout, err = invoke("start", "loadgen", "--config", config, "--duration", "0.5", "--rps", "10",
                                   "--prompt-tokens", "8", "--output-tokens", "2", "--out", out, "--quiet")
    assert code == 0, err
    assert "5 requests: 5 ok" in stdout


@pytest.mark.parametrize(("args", "match"), [
    ([], "pass --coordinator tcp://HOST:PORT"),
    (["--coordinator", "tcp://127.0.0.1:1", "--entry", "tcp://127.0.0.1:2"], "not both"),
    (["--coordinator", "localhost:5555"], "write it like tcp://HOST:PORT"),
    (["--coordinator", "tcp://127.0.0.1:1", "--timeout", "0"], "pass --timeout SECONDS"),
    (["--coordinator", "tcp://127.0.0.1:1", "--schedule", "/nonexistent.csv"], "schedctl loadgen plan"),
    (["--coordinator", "tcp://127.0.0.1:1", "--out", "/nonexistent/dir/r.csv"], "does not exist; create it"),
])
def test_start_loadgen_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], match: str) -> None:
    if "--out" not in args:
        args = [*args, "--out", str(tmp_path / "r.csv")]
    code, _, err = invoke("start", "loadgen", *args)
    assert_one_line_error(code, err, match)


def test_bad_schedule_through_the_cli_names_the_line(tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.csv"
    schedule.write_text("request_id,t_s,model,prompt_tokens,max_new_tokens\nr1,soon,m,1,1\n")
    code, _, err = invoke("start", "loadgen", "--schedule", schedule, "--coordinator", "tcp://127.0.0.1:1",
                          "--out", tmp_path / "r.csv")
    assert_one_line_error(code, err, f"{schedule} line 2: t_s 'soon' is not a number")


def test_bad_config_file_key(tmp_path: Path) -> None:
    config = tmp_path / "schedctl.toml"
    config.write_text('[loadgen]\ncoordinater = "tcp://127.0.0.1:1"\n')
    code, _, err = invoke("start", "loadgen", "--config", config, "--out", tmp_path / "r.csv")
    assert_one_line_error(code, err, "unknown key(s) coordinater")


@pytest.mark.parametrize("command", [["loadgen", "plan"], ["start", "loadgen"]])
def test_help_has_examples(command: list[str]) -> None:
    code, stdout, _ = invoke(*command, "--help")
    assert code == 0 and "Examples:" in stdout and "schedctl" in stdout


def test_plan_defaults_fit_the_default_models_context_and_say_what_was_clipped(tmp_path: Path) -> None:
    """Issue 10: the default Azure prompt lengths (up to 8192) exceed opt-125m's 2048 tokens."""
    out = tmp_path / "schedule.csv"
    code, _, err = invoke("loadgen", "plan", "--duration", "4", "--rps", "5", "-o", out)
    assert code == 0, err
    assert "clipped 6 of 20 requests for facebook/opt-125m" in err and "--prompt-tokens" in err
    for req in read_schedule_csv(out):
        assert req.prompt_tokens <= 2047 and req.prompt_tokens + req.max_new_tokens <= 2048


@pytest.mark.parametrize(
    ("models", "prompt", "match"),
    [
        ("facebook/opt-125m", "3000", "--models meta-llama/Llama-2-7b-hf,meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-llama/Llama-2-7b-hf", "uniform:5000-6000", "no profiled model takes that long a prompt"),
    ],
)
def test_plan_refuses_prompts_that_can_never_fit(tmp_path: Path, models: str, prompt: str, match: str) -> None:
    code, _, err = invoke("loadgen", "plan", "--duration", "4", "--rps", "5", "--models", models,
                          "--prompt-tokens", prompt, "-o", tmp_path / "s.csv")
    assert_one_line_error(code, err, match)
    assert "--prompt-tokens with lengths up to" in err
    assert not (tmp_path / "s.csv").exists()
