"""`schedctl logs` (over a stand-in journalctl) and `schedctl keys generate`, without systemd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.logs import command, journalctl_args
from cli.main import app

FAKE = """#!/usr/bin/env python3
import json, sys
open(sys.argv[0] + ".args", "a").write(json.dumps(sys.argv[1:]) + "\\n")
if "-F" in sys.argv:
    print("schedctl-node.service\\nother.service")
    sys.exit(0)
src = sys.argv[sys.argv.index("-D") + 1] if "-D" in sys.argv else "local"
for i, t in enumerate((3, 1) if src == "b" else (2,)):
    print(json.dumps({"__REALTIME_TIMESTAMP": str(t * 1_000_000), "_HOSTNAME": src, "MESSAGE": f"m{t}",
                      "_SYSTEMD_UNIT": "schedctl-node.service", "SCHEDCTL_REQUEST_ID": "r-1", "SCHEDCTL_NODE": "n1"}))
"""


@pytest.fixture
def journalctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fake = tmp_path / "journalctl"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    return fake


def test_filters_become_journal_matches() -> None:
    args = journalctl_args(["schedctl-node.service"], "r-1", "n1", "-10min", 5, True)
    assert args == ["journalctl", "--no-pager", "-o", "json", "-u", "schedctl-node.service", "SCHEDCTL_REQUEST_ID=r-1",
                    "SCHEDCTL_NODE=n1", "--since", "-10min", "-n", "5", "-f"]
    assert journalctl_args([], None, None, None, None, False) == ["journalctl", "--no-pager", "-o", "json"]
    assert command(["ssh", "-o", "BatchMode=yes", "h", "--"], ["journalctl", "SCHEDCTL_NODE=a b"])[-1] == \
        "journalctl 'SCHEDCTL_NODE=a b'"


def test_sources_are_merged_by_time(journalctl: Path) -> None:
    out = CliRunner().invoke(app, ["logs", "-r", "r-1", "-D", "a", "-D", "b"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert [line.split()[2] for line in lines] == ["b", "a", "b"]  # host column, by timestamp 1, 2, 3
    assert "schedctl-node.service: m1  [request_id=r-1 node=n1]" in lines[0]
    calls = [json.loads(c) for c in Path(f"{journalctl}.args").read_text().splitlines()]
    queries = [c for c in calls if "-F" not in c]
    assert len(queries) == 2
    assert all("SCHEDCTL_REQUEST_ID=r-1" in c and c[c.index("-u") + 1] == "schedctl-node.service" for c in queries)
    assert "other.service" not in str(queries)


def test_follow_takes_one_source(journalctl: Path) -> None:
    out = CliRunner().invoke(app, ["logs", "-f", "-D", "a", "-D", "b"])
    assert out.exit_code == 2 and "one source" in out.output


def test_keys_generate(tmp_path: Path) -> None:
    out = CliRunner().invoke(app, ["keys", "generate", "--dir", str(tmp_path), "--name", "a", "--name", "b"])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.key", "a.key_secret", "b.key", "b.key_secret"]
    again = CliRunner().invoke(app, ["keys", "generate", "--dir", str(tmp_path), "--name", "a"])
    assert again.exit_code == 2 and "exists" in again.output


NO_JOURNAL = """#!/usr/bin/env python3
import sys
print("No journal files were found.", file=sys.stderr)
"""
OTHER_UNITS_ONLY = """#!/usr/bin/env python3
print("systemd-journald.service\\nsshd.service")
"""


def write_run(results: Path, name: str, logs: dict[str, str]) -> Path:
    daemons = results / name / "daemons"
    daemons.mkdir(parents=True)
    for daemon, text in logs.items():
        (daemons / f"{daemon}.log").write_text(text)
    return results / name


@pytest.mark.parametrize("journal", [NO_JOURNAL, OTHER_UNITS_ONLY], ids=["no journal", "no schedctl units"])
def test_without_a_journal_it_reads_the_latest_local_run_and_says_so(tmp_path: Path, journal: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "journalctl").write_text(journal)
    (bin_dir / "journalctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{__import__('os').environ['PATH']}")
    old = write_run(tmp_path / "results", "old_gossip",
                    {"node-0": "2026-01-01 10:00:00,000 node[node-0] INFO x: old\n"})
    new = write_run(tmp_path / "results", "new_centralized", {
        "node-0": "2026-01-01 12:00:02,000 node[node-0] INFO x: serving r000007\n"
                  "2026-01-01 12:00:03,000 node[node-0] ERROR x: boom\nTraceback (most recent call last):\n",
        "coordinator": "2026-01-01 12:00:01,000 coordinator INFO x: placed r000007 on node-0\n"})
    __import__("os").utime(old / "daemons", (1, 1))  # older than the other run
    out = CliRunner().invoke(app, ["logs", "--results-dir", str(tmp_path / "results"), "-r", "r000007"])
    assert out.exit_code == 0, out.output
    assert out.stderr.strip() == (f"no journal of schedctl's units on this host: reading the latest local run's "
                                  f"daemon logs, {new / 'daemons'}/*.log")
    assert out.stdout.splitlines() == [
        "coordinator: 2026-01-01 12:00:01,000 coordinator INFO x: placed r000007 on node-0",
        "node-0: 2026-01-01 12:00:02,000 node[node-0] INFO x: serving r000007"]
    by_node = CliRunner().invoke(app, ["logs", "--run", str(new), "--node", "node-0"])
    assert by_node.stdout.splitlines()[-1] == "Traceback (most recent call last):"  # kept with its line
    nothing = CliRunner().invoke(app, ["logs", "--results-dir", str(tmp_path / "none")])
    assert nothing.exit_code == 2 and "no local run logs" in nothing.output and "--run DIR" in nothing.output


def test_a_host_that_cannot_be_reached_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ssh = tmp_path / "ssh"  # what ssh does when it cannot resolve, connect or log in: exit 255
    ssh.write_text("#!/bin/sh\necho 'ssh: Could not resolve hostname gpu-9: Name or service not known' >&2\nexit 255\n")
    ssh.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    out = CliRunner().invoke(app, ["logs", "-H", "root@gpu-9", "-r", "r000001"])
    assert out.exit_code == 2 and out.stdout == ""
    assert out.stderr.strip() == ("error: cannot reach root@gpu-9 over ssh (ssh: Could not resolve hostname gpu-9: "
                                  "Name or service not known): check the host name and that `ssh root@gpu-9 true` "
                                  "works without a password")
