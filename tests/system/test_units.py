"""The unit files in etc/systemd: `systemd-analyze verify` says nothing, exposure stays low.

verify checks that ExecStart exists on the verifying machine (systemd.service(5), systemd.exec(5)), so the
units are verified under `--root` of a temporary tree holding the system's own units, the
units under test and stand-ins for the executables they run (/opt/schedctl/venv/bin/schedctl
as Ansible installs it, /opt/tgi/bin/text-generation-launcher).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS_DIR = Path(__file__).resolve().parents[2] / "etc/systemd"
# templates are checked as an instance, as systemd would run them
UNITS = {"schedctl.target": "schedctl.target", "schedctl-coordinator.service": "schedctl-coordinator.service",
         "schedctl-node.service": "schedctl-node.service",
         "schedctl-loadgen@.service": "schedctl-loadgen@smoke.service",
         "emulator@.service": "emulator@llama.service"}
NO_GPU = ["schedctl-coordinator.service", "schedctl-loadgen@smoke.service", "emulator@llama.service"]
GPU = ["schedctl-node.service"]
MAX_EXPOSURE = 4.0
EXECUTABLES = ("opt/schedctl/venv/bin/schedctl",)

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not found (Debian package systemd)")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    system = Path("/usr/lib/systemd/system")
    if not system.is_dir():
        system = Path("/lib/systemd/system")
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in UNITS:
        shutil.copy(UNITS_DIR / name, root / "etc/systemd/system" / name)
    for exe in EXECUTABLES:
        path = root / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", f"--root={root}", *args], capture_output=True, text=True, timeout=60)


def test_every_unit_file_is_checked() -> None:
    assert sorted(p.name for p in UNITS_DIR.iterdir()) == sorted(UNITS)


@pytest.mark.parametrize("unit", UNITS.values())
def test_verify_prints_nothing(root: Path, unit: str) -> None:
    # verify exits 0 on unknown keys and only warns: silence is the real check
    out = analyze(root, "verify", unit)
    assert (out.returncode, out.stdout + out.stderr) == (0, "")


def test_verify_notices_a_missing_executable(root: Path) -> None:
    exe = root / EXECUTABLES[0]
    exe.rename(exe.with_suffix(".gone"))
    try:
        out = analyze(root, "verify", "emulator@llama.service")
    finally:
        exe.with_suffix(".gone").rename(exe)
    assert out.returncode != 0 and "schedctl" in out.stderr


def exposure(root: Path, unit: str) -> float:
    out = analyze(root, "security", "--offline=yes", unit)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", out.stdout)
    assert found, out.stdout[-2000:] + out.stderr
    return float(found.group(1))


@pytest.mark.parametrize("unit", NO_GPU)
def test_exposure_of_units_without_gpu(root: Path, unit: str) -> None:
    assert exposure(root, unit) <= MAX_EXPOSURE


@pytest.mark.parametrize("unit", GPU)
def test_gpu_units_keep_devices_reachable(root: Path, unit: str) -> None:
    text = (root / "etc/systemd/system" / unit.replace("llama", "")).read_text()
    assert "DeviceAllow=char-nvidia* rw" in text
    assert not re.search(r"^(PrivateDevices|MemoryDenyWriteExecute)=yes", text, flags=re.M)
    assert exposure(root, unit) < 5.0  # hardened as far as a CUDA process allows


LIMITS_OWNED_ELSEWHERE = {"tgi@.service"}  # its limits come with the TGI unit's own change


@pytest.mark.parametrize("name", sorted(n for n in UNITS if n.endswith(".service")))
def test_every_service_bounds_its_file_descriptors_and_memory(name: str) -> None:
    text = (UNITS_DIR / name).read_text()
    keys = {line.split("=", 1)[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    if name in LIMITS_OWNED_ELSEWHERE and "LimitNOFILE" not in keys:
        pytest.skip(f"{name}: limits are added by the change that owns that unit")
    assert "LimitNOFILE" in keys, f"{name} sets no LimitNOFILE"
    assert keys & {"MemoryMax", "MemoryHigh"}, f"{name} sets neither MemoryMax nor MemoryHigh"
    nofile = re.search(r"^LimitNOFILE=(\d+)$", text, re.MULTILINE)
    assert nofile is not None and 1024 <= int(nofile.group(1)) <= 1 << 20
