"""The Ansible tree: production-profile lint and a syntax check, both offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (pip install -e '.[dev]')")
    return str(path)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1"}
    return subprocess.run(cmd, cwd=ANSIBLE, env=env, capture_output=True, text=True, timeout=300)


def test_lint_production_profile() -> None:
    out = run(tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]


def test_syntax_check() -> None:
    out = run(tool("ansible-playbook"), "--syntax-check", "-i", "inventory/example.yml", "deploy.yml")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
