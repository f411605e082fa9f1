"""`[metrics] bind`: parsed once, and every mistake is one line naming the fix."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from daemons.bus.metrics import MetricsConfig, parse_bind
from daemons.coordinator.testing import free_endpoint, schedctl
from daemons.core.errors import ConfigError


def test_off_by_default_and_read_from_file_env_and_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not MetricsConfig().enabled
    path = tmp_path / "schedctl.toml"
    path.write_text('[metrics]\nbind = "127.0.0.1:9464"\n')
    assert MetricsConfig.load(path).bind == "127.0.0.1:9464"
    monkeypatch.setenv("SCHEDCTL_METRICS_BIND", "0.0.0.0:9500")
    assert MetricsConfig.load(path).bind == "0.0.0.0:9500"
    assert MetricsConfig.load(path, {"bind": ""}).enabled is False  # the flag turns it off again


def test_a_daemon_table_overrides_the_host_default(tmp_path: Path) -> None:
    path = tmp_path / "schedctl.toml"
    path.write_text('[metrics]\nbind = "10.0.0.1:9464"\n[metrics.node]\nbind = "10.0.0.1:9465"\n')
    assert MetricsConfig.load(path, daemon="coordinator").bind == "10.0.0.1:9464"
    assert MetricsConfig.load(path, daemon="node").bind == "10.0.0.1:9465"
    path.write_text('[metrics.loadgen]\nbind = "10.0.0.1:9466"\n')
    assert not MetricsConfig.load(path, daemon="node").enabled


@pytest.mark.parametrize(("text", "host", "port"), [("127.0.0.1:9464", "127.0.0.1", 9464), (":9464", "0.0.0.0", 9464),
                                                    ("[::1]:9100", "::1", 9100), ("gpu-1.lab:9465", "gpu-1.lab", 9465)])
def test_bind_forms(text: str, host: str, port: int) -> None:
    assert parse_bind(text) == (host, port)


@pytest.mark.parametrize(("data", "match"), [
    ({"bind": "9464"}, "bind must be HOST:PORT like 127.0.0.1:9464"),
    ({"bind": "127.0.0.1:99999"}, "the port must be a number from 1 to 65535"),
    ({"bind": "bad host!:9464"}, "neither an IP address nor a host name"),
    ({"bind": 9464}, "bind must be a string"),
    ({"port": 9464}, "unknown key(s) port; known keys: bind"),
])
def test_mistakes_name_the_fix(tmp_path: Path, data: dict[str, object], match: str) -> None:
    path = tmp_path / "schedctl.toml"
    path.write_text("[metrics]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in data.items()))
    with pytest.raises(ConfigError, match=match.replace("(", r"\(").replace(")", r"\)")):
        MetricsConfig.load(path)


def _start(*args: str) -> subprocess.CompletedProcess[str]:
    ends = [free_endpoint() for _ in range(3)]
    command = [schedctl(), "start", "coordinator", "--bind", ends[0], "--state-bind", ends[1],
               "--events-bind", ends[2], *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_bad_flag_is_one_line_and_exit_2() -> None:
    out = _start("--metrics-bind", "localhost")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: [metrics] bind must be HOST:PORT"), \
        out.stderr


@pytest.mark.parametrize("command", [["node"], ["loadgen", "--out", "requests.csv", "--duration", "1",
                                                "--coordinator", "tcp://127.0.0.1:1"]])
def test_every_daemon_command_refuses_a_bad_bind_in_one_line(tmp_path: Path, command: list[str]) -> None:
    out = subprocess.run([schedctl(), "start", *command, "--metrics-bind", "127.0.0.1:http"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: [metrics] bind must be HOST:PORT"), out.stderr
    assert "Traceback" not in out.stderr


def test_a_taken_port_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        out = _start("--metrics-bind", bind)
    assert out.returncode == 2
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: cannot open the metrics endpoint on {bind}") and "--metrics-bind" in line, \
        out.stderr
    assert "Traceback" not in out.stderr
