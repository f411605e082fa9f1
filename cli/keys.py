"""`schedctl keys generate`: CURVE key pairs for the daemons (see daemons/bus/security.py)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer
import zmq.auth

from cli.errors import exit_on_config_error
from daemons.bus.security import CurveClient, SecurityConfig
from daemons.core.errors import ConfigError

keys_app = typer.Typer(help="CURVE keys that authenticate and encrypt traffic between hosts.", no_args_is_help=True)


@keys_app.command("generate")
@exit_on_config_error
def generate(
    directory: Annotated[Path, typer.Option("--dir", "-d", help="Where to write NAME.key and NAME.key_secret.")] = Path(
        "keys"),
    names: Annotated[list[str] | None, typer.Option("--name", "-n", help="Key pair name (repeatable); "
                                                    "default: this host's name.")] = None,
    role: Annotated[str | None, typer.Option("--role", "-r", help="The identity's role(s), comma-separated: "
                                      "coordinator, node, loadgen, collector, operator. Without one, "
                                      "the key may only ask for status.")] = None,
) -> None:
    """Make CURVE key pairs: NAME.key (public, 0644) and NAME.key_secret (0600).

    A cluster needs one `server` pair (its secret on every host that binds) and one pair
    per host (its public key in every server's allowed_keys_dir). Each host's key carries
    its identity: `--role` and its NAME, which must be the daemon's configured name (a node
    key publishes state for that node only; see daemons/bus/authz.py). Existing files are
    never overwritten: with --role, an existing pair keeps its keys and gets that identity
    (prints `unchanged` when it already had it).

    Examples:

    \b
      schedctl keys generate --dir /etc/schedctl/curve --name server
      schedctl keys generate --dir keys --role node --name gpu-1 --name gpu-2
      schedctl keys generate --dir keys --role operator,collector --name controller
    """
    from daemons.bus.security import generate as make_pair
    from daemons.bus.security import set_identity

    for name in names or [socket.gethostname()]:
        own = role if name != "server" and role is not None else ""
        if role is not None and name != "server" and (directory / f"{name}.key_secret").exists():
            # an existing pair keeps its keys and gets this identity
            changed = set_identity(directory, name, own)
            typer.echo(f"{name}: identity {own or 'no role'}:{name} " + ("set" if changed else "unchanged"))
            continue
        public, secret = make_pair(directory, name, role=own)
        typer.echo(f"{name}: public {public}, secret {secret}" + (f" ({own})" if own else ""))


def operator_curve(keys: Path | None, key: str, cluster: Path | None) -> CurveClient | None:
    """An operator command's CURVE keys: `--keys DIR` (server.key + KEY.key_secret there), else the
    cluster file's [security], else this host's [security] (/etc/schedctl/schedctl.toml,
    SCHEDCTL_SECURITY_*); None when none is set (a cluster without CURVE)."""
    from daemons.bus.security import Security, SecurityConfig

    if keys is not None:
        if not keys.is_dir():
            raise ConfigError(f"--keys {keys} is not a directory: pass the directory holding server.key and "
                              f"{key}.key_secret (ansible/.keys/CLUSTER on the controller)")
        config = SecurityConfig(curve_dir=str(keys), client_key=key, allowed_keys_dir=str(keys))
        return CurveClient(*_client_pair(config), _server_public(config))
    if cluster is not None:
        from cli.experiment.remote import RemoteCluster

        return RemoteCluster.load(cluster).curve
    config = SecurityConfig.load(None)
    return Security(config).client if config.enabled else None


def _client_pair(config: SecurityConfig) -> tuple[bytes, bytes]:
    path = config.key_path(config.client_key)
    if not Path(f"{path}_secret").exists():
        raise ConfigError(f"{path}_secret not found: pass --key NAME of a key pair in {config.curve_dir} "
                          "(the deployment's is `controller`)")
    public, secret = zmq.auth.load_certificate(f"{path}_secret")
    assert secret is not None
    return public, secret


def _server_public(config: SecurityConfig) -> bytes:
    path = config.key_path(config.server_key)
    if not path.exists():
        raise ConfigError(f"{path} not found: the directory passed to --keys must hold the cluster's server.key")
    return zmq.auth.load_certificate(path)[0]
