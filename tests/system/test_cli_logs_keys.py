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
