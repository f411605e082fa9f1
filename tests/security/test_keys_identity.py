"""`schedctl keys generate --role`: a key's identity lives in its files' metadata, is what the ZAP
handler admits it as, and an existing pair (a deployment made before identities) can gain one."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from daemons.bus.authz import Identity
from daemons.bus.security import read_identities


def keys(*args: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["keys", "generate", *args])
    return out.exit_code, out.output


def test_identity_in_the_key_and_in_zap(tmp_path: Path) -> None:
    assert keys("--dir", str(tmp_path), "--role", "node", "--name", "gpu-1")[0] == 0
    assert keys("--dir", str(tmp_path), "--role", "operator,collector", "--name", "controller")[0] == 0
    assert keys("--dir", str(tmp_path), "--name", "server")[0] == 0
    found = read_identities(tmp_path)
    assert sorted(found.values(), key=lambda i: i.name) == [
        Identity("controller", frozenset({"operator", "collector"})), Identity("gpu-1", frozenset({"node"})),
        Identity("server", frozenset())]


def test_an_existing_pair_gains_an_identity_and_keeps_its_keys(tmp_path: Path) -> None:
    assert keys("--dir", str(tmp_path), "--name", "gpu-1")[0] == 0  # before identities: no role
    before = (tmp_path / "gpu-1.key").read_text().split("public-key")[1]
    assert next(iter(read_identities(tmp_path).values())).roles == frozenset()
    code, out = keys("--dir", str(tmp_path), "--role", "node", "--name", "gpu-1")
    assert code == 0 and "set" in out
    assert (tmp_path / "gpu-1.key").read_text().split("public-key")[1] == before
    assert next(iter(read_identities(tmp_path).values())) == Identity("gpu-1", frozenset({"node"}))
    code, out = keys("--dir", str(tmp_path), "--role", "node", "--name", "gpu-1")
    assert code == 0 and "unchanged" in out  # what keeps the playbook's second run at changed=0
    assert keys("--dir", str(tmp_path), "--name", "gpu-1")[0] != 0  # without --role: never overwritten


def test_a_bad_role_is_one_clear_line(tmp_path: Path) -> None:
    code, out = keys("--dir", str(tmp_path), "--role", "root", "--name", "x")
    assert code != 0 and "unknown role 'root'" in out and "Traceback" not in out
    assert not list(tmp_path.glob("x.key*"))
