"""CURVE keys for one local cluster, made per run: the deployment's layout on one host.

Like `ansible/roles/schedctl/tasks/keys.yml`: one `server` pair (every daemon that binds
holds its secret) and one pair per daemon, each carrying its identity (role, name) in its
metadata, every public key admitted in `allowed/`. They live in a private temporary
directory (0700), never in the results directory, and are deleted when the cluster stops.
Each daemon finds its keys through `SCHEDCTL_SECURITY_*` environment variables
(`daemons/bus/security.py`); the runner's own parts (load generator, collector, the
readiness checks as operator) use `security(name)`.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from daemons.bus.security import CurveClient, Security, SecurityConfig, generate

SERVER = "server"
# The runner's own identities: they run inside `schedctl experiment run`.
LOADGEN, COLLECTOR, OPERATOR = "loadgen", "collector", "operator"


@dataclass(frozen=True)
class LocalKeys:
    directory: Path

    @classmethod
    def create(cls, daemons: dict[str, str]) -> LocalKeys:
        """Keys for `daemons` (name -> role) and the runner's own identities."""
        directory = Path(tempfile.mkdtemp(prefix="schedctl-curve-"))
        keys = cls(directory)
        try:
            generate(directory, SERVER)
            allowed = directory / "allowed"
            allowed.mkdir()
            everyone = {**daemons, LOADGEN: "loadgen", COLLECTOR: "collector", OPERATOR: "operator"}
            for name, role in everyone.items():
                public, _ = generate(directory, name, role=role)
                shutil.copy(public, allowed / public.name)
        except BaseException:
            keys.remove()
            raise
        return keys

    def config(self, name: str) -> SecurityConfig:
        return SecurityConfig(curve_dir=str(self.directory), server_key=SERVER, client_key=name,
                              allowed_keys_dir=str(self.directory / "allowed"))

    def env(self, name: str) -> dict[str, str]:
        """The environment that gives daemon `name` its keys."""
        config = self.config(name)
        return {"SCHEDCTL_SECURITY_CURVE_DIR": config.curve_dir, "SCHEDCTL_SECURITY_SERVER_KEY": SERVER,
                "SCHEDCTL_SECURITY_CLIENT_KEY": name, "SCHEDCTL_SECURITY_ALLOWED_KEYS_DIR": config.allowed_keys_dir}

    def security(self, name: str) -> Security:
        return Security(self.config(name))

    def client(self, name: str) -> CurveClient | None:
        return self.security(name).client

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
