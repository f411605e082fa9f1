"""CURVE encryption + ZAP authentication for every socket between hosts (REFERENCE.md §7.3).

Key layout (made by `schedctl keys generate`, distributed by Ansible):

    [security]
    curve_dir = "/etc/schedctl/curve"                 # this host's key files
    server_key = "server"                              # cluster pair: server.key (+ _secret where daemons bind)
    client_key = "client"                              # this host's own pair: client.key + client.key_secret
    allowed_keys_dir = "/etc/schedctl/curve/allowed"  # public keys (*.key) of every admitted client

Sockets that bind (coordinator ROUTER/SUB/PUB, node ROUTER) are CURVE servers with the
cluster's server key; sockets that connect (loadgen DEALER, node PUB, collectors) are CURVE
clients with their host's own key pair and trust the server's public key. A ZAP handler on
the same context admits only clients whose public key is in `allowed_keys_dir`.

Why the guard in `CurveServer.apply`: a CURVE server socket with no ZAP handler encrypts
but admits *anyone* who knows the server's public key. We set ZAP_DOMAIN and
ZAP_ENFORCE_DOMAIN (a missing handler then fails the handshake) and also refuse to
configure a server socket on a context where `start_zap` has not run.

Security is off when `curve_dir` is empty (local experiments on loopback).
"""

from __future__ import annotations

import logging
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from daemons.bus.errors import ConfigError
from daemons.bus.settings import build, env_overrides, read_section

log = logging.getLogger("schedctl.security")
ZAP_DOMAIN = "schedctl"
# Contexts (by libzmq address) whose ZAP handler runs; server sockets refuse any other context.
_ZAP: dict[int, ThreadAuthenticator] = {}


@dataclass(frozen=True)
class SecurityConfig:
    curve_dir: str = ""
    server_key: str = "server"
    client_key: str = "client"
    allowed_keys_dir: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.curve_dir)

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any] | None = None) -> SecurityConfig:
        """[security] of the file, then SCHEDCTL_SECURITY_* environment, then flags."""
        data = read_section(path, "security")
        data.update(env_overrides(cls, "security"))
        data.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return build(cls, data, f"[security] of {path}" if path else "security config")

    def key_path(self, name: str) -> Path:
        """A key name inside curve_dir, or a path to a `.key` file."""
        return Path(name) if "/" in name else Path(self.curve_dir) / f"{name}.key"

    def allowed_dir(self) -> Path:
        return Path(self.allowed_keys_dir) if self.allowed_keys_dir else Path(self.curve_dir) / "allowed"


@dataclass(frozen=True)
class CurveServer:
    public: bytes
    secret: bytes

    def apply(self, sock: Any) -> None:
        if sock.context.underlying not in _ZAP:
            raise RuntimeError("call start_zap(ctx) before creating CURVE server sockets: "
                               "CURVE without a ZAP handler admits any client")
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


@dataclass(frozen=True)
class CurveClient:
    public: bytes
    secret: bytes
    server_public: bytes

    def apply(self, sock: Any) -> None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)


class Security:
    """The keys of one daemon; `server` / `client` are None when security is off."""

    def __init__(self, config: SecurityConfig) -> None:
        self.config = config
        self.server: CurveServer | None = None
        self.client: CurveClient | None = None
        if not config.enabled:
            return
        if not zmq.has("curve"):
            raise ConfigError("[security] curve_dir is set but this libzmq has no CURVE support")
        server_public, server_secret = _load(config.key_path(config.server_key), secret=False)
        client_public, client_secret = _load(config.key_path(config.client_key), secret=True)
        assert client_secret is not None
        self.client = CurveClient(client_public, client_secret, server_public)
        if server_secret is not None:  # only hosts that bind hold the server's secret
            self.server = CurveServer(server_public, server_secret)
        allowed = config.allowed_dir()
        if not allowed.is_dir() or not any(allowed.glob("*.key")):
            raise ConfigError(f"[security] allowed_keys_dir {allowed} holds no *.key files: copy the public key "
                              "of every client there (schedctl keys generate makes them)")

    @classmethod
    def load(cls, path: Path | None, overrides: dict[str, Any] | None = None) -> Security:
        return cls(SecurityConfig.load(path, overrides))

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def bind_server(self) -> CurveServer | None:
        """The server side for a socket that binds; an error if this host lacks the server secret."""
        if self.enabled and self.server is None:
            path = self.config.key_path(self.config.server_key)
            raise ConfigError(f"this daemon binds a socket but {path}_secret is missing: install the cluster's "
                              "server key pair on this host")
        return self.server

    def start_zap(self, ctx: zmq.Context[Any]) -> ThreadAuthenticator | None:
        """Run the ZAP handler on `ctx` (plain or asyncio) admitting only the allowed keys."""
        if not self.enabled:
            return None
        existing = _ZAP.get(ctx.underlying)
        if existing is not None:
            return existing
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("schedctl.zap"))
        auth.start()
        auth.configure_curve(domain=ZAP_DOMAIN, location=str(self.config.allowed_dir()))
        _ZAP[ctx.underlying] = auth
        weakref.finalize(ctx, _ZAP.pop, ctx.underlying, None)
        log.info("CURVE on: admitting %d client key(s) from %s", len(auth.certs.get(ZAP_DOMAIN, {})),
                 self.config.allowed_dir())
        return auth

    def reload(self) -> None:
        """Re-read allowed keys (e.g. on SIGHUP): pyzmq loads them once per configure_curve."""
        for auth in _ZAP.values():
            auth.configure_curve(domain=ZAP_DOMAIN, location=str(self.config.allowed_dir()))


def stop_zap(ctx: zmq.Context[Any]) -> None:
    """Stop the ZAP handler of `ctx` (before ctx.term(), or term() waits for its sockets)."""
    auth = _ZAP.pop(ctx.underlying, None)
    if auth is not None:
        auth.stop()


def _load(public_path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret or None) from `name.key` / `name.key_secret`, preferring the secret file."""
    secret_path = Path(f"{public_path}_secret")
    path = secret_path if secret_path.exists() else public_path
    if secret and not secret_path.exists():
        raise ConfigError(f"key file {secret_path} not found: run `schedctl keys generate` and point "
                          "[security] curve_dir at its directory")
    if not path.exists():
        raise ConfigError(f"key file {public_path} not found: run `schedctl keys generate` and point "
                          "[security] curve_dir at its directory")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot read key file {path}: {exc}") from None
    if secret_key is not None and path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} is readable by group or others: chmod 600 {path}")
    return public, secret_key


def generate(directory: Path, name: str) -> tuple[Path, Path]:
    """Write `name.key` (public, 0644) and `name.key_secret` (0600); refuse to overwrite."""
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"{path} exists: choose another --name or delete the old key pair first")
    old = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        public_made, secret_made = zmq.auth.create_certificates(str(directory), name)
    finally:
        os.umask(old)
    Path(secret_made).chmod(0o600)
    Path(public_made).chmod(0o644)
    return Path(public_made), Path(secret_made)
