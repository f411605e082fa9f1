"""CURVE encryption + ZAP authentication for every socket between hosts (libzmq zmq_curve(7); pyzmq zmq/auth).

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

Identities (daemons/bus/authz.py): each admitted key file carries its identity in its
metadata, `role = node` and `name = gpu-1` (`schedctl keys generate --role ROLE`). The ZAP
handler admits exactly the keys in `allowed_keys_dir` and gives each connection the
User-Id `ROLE:NAME`; daemons read it per message (`identity_of`) and check it with
`authz.check`. A key file without a role is admitted with no role: it may ask for status
and nothing else. Denied handshakes and refused messages are logged per cause, at most a
few lines per cause every ten seconds, each saying how many were suppressed before it.

Security is off when `curve_dir` is empty (`schedctl experiment run --insecure`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from daemons.bus.authz import Identity, TokenBucket, check_role_name, parse_user_id
from daemons.core.errors import ConfigError
from daemons.core.settings import build, env_overrides, read_section

log = logging.getLogger("schedctl.security")
ZAP_DOMAIN = "schedctl"
# Contexts (by libzmq address) whose ZAP handler runs; server sockets refuse any other context.
_ZAP: dict[int, ThreadAuthenticator] = {}


@dataclass(frozen=True)
class SecurityConfig:
    curve_dir: str = ""  # directory of this host's keys; empty = CURVE off
    server_key: str = "server"  # the cluster's server key pair (in curve_dir), held by hosts that bind
    client_key: str = "client"  # this host's client key pair (in curve_dir)
    allowed_keys_dir: str = ""  # public keys admitted by ZAP; empty = curve_dir/allowed

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
        if existing is not None and not existing.context.closed:
            return existing
        auth = IdentityAuthenticator(ctx, log=logging.getLogger("schedctl.zap"))
        auth.start()
        auth.load(self.config.allowed_dir())
        _ZAP[ctx.underlying] = auth
        # A terminated context's address can be reused by the next one: forget only our own entry,
        # or a late finalizer would orphan the new context's handler (and its term() would hang).
        weakref.finalize(ctx, _forget_zap, ctx.underlying, auth)
        return auth

    def reload(self) -> None:
        """Re-read allowed keys (e.g. on SIGHUP)."""
        for auth in _ZAP.values():
            if isinstance(auth, IdentityAuthenticator):
                auth.load(self.config.allowed_dir())


class IdentityAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, admitting the keys of one directory, each as its own identity.

    pyzmq calls `callback` (admission) and then `curve_user_id` (the User-Id libzmq stamps
    on the connection's messages) from its authentication thread.
    """

    def load(self, directory: Path) -> None:
        identities = read_identities(directory)
        self.identities = identities  # one assignment: the ZAP thread sees the old or the new dict
        self.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self)
        log.info("CURVE on: admitting %d client key(s) from %s", len(identities), directory)

    def callback(self, domain: str, key: bytes) -> bool:
        if key in getattr(self, "identities", {}):
            return True
        refused("handshake", f"unlisted client key {key.decode('ascii', 'replace')[:12]}...: not in the "
                "allowed keys directory, handshake denied")
        return False

    def curve_user_id(self, client_public_key: bytes) -> str:
        identity = self.identities.get(z85.encode(client_public_key))
        return identity.user_id() if identity is not None else "-:?"


def read_identities(directory: Path) -> dict[bytes, Identity]:
    """z85 public key -> identity, for every `*.key` in `directory` (unreadable files are skipped, logged)."""
    found: dict[bytes, Identity] = {}
    for path in sorted(directory.glob("*.key")):
        try:
            public, _ = zmq.auth.load_certificate(path)
            metadata = read_metadata(path)
        except (ValueError, OSError) as exc:
            log.error("allowed key %s not admitted: %s", path, exc)
            continue
        name = metadata.get("name", path.stem)
        roles = {r for r in metadata.get("role", "").split(",") if r}
        bad = next((why for r in roles if (why := check_role_name(r, name))), None)
        if bad is not None:
            log.error("allowed key %s not admitted: %s", path, bad)
            continue
        if not roles:
            log.warning("allowed key %s has no role: it may only ask for status (make keys with "
                        "`schedctl keys generate --role ROLE`)", path)
        found[public] = Identity(name, frozenset(roles))
    return found


def read_metadata(path: Path) -> dict[str, str]:
    """The `metadata` section of a ZPL certificate file (RFC 32 / zcert): `key = value` lines."""
    section, out = "", {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not line[0].isspace():
            section = line.strip()
        elif section == "metadata" and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"')
    return out


def identity_of(frame: Any) -> Identity | None:
    """The authenticated identity of a message received with `copy=False` (None: none)."""
    try:
        value = frame.get("User-Id")
    except (zmq.ZMQError, AttributeError):
        return None
    return parse_user_id(value if isinstance(value, str) else None)


_BUCKET = TokenBucket()
_BUCKET_LOCK = threading.Lock()  # ZAP threads and daemon loops both report


def refused(cause: str, detail: str) -> None:
    """Log a denied handshake or a refused message, rate-limited per cause."""
    with _BUCKET_LOCK:
        suppressed = _BUCKET.take(cause, time.monotonic())
    if suppressed is not None:
        more = f" ({suppressed} more like it suppressed)" if suppressed else ""
        log.warning("refused (%s): %s%s", cause, detail, more)


def _forget_zap(key: int, auth: ThreadAuthenticator) -> None:
    if _ZAP.get(key) is auth:
        del _ZAP[key]


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


def generate(directory: Path, name: str, role: str = "", identity: str = "") -> tuple[Path, Path]:
    """Write `name.key` (public, 0644) and `name.key_secret` (0600); refuse to overwrite.

    `role` (comma-separated roles) and `identity` (default: `name`) go into the files'
    metadata: the identity the ZAP handler gives this key where it is admitted."""
    identity = identity or name
    metadata = {"name": identity, "role": role} if role else None
    for one in filter(None, role.split(",")):
        why = check_role_name(one, identity)
        if why is not None:
            raise ConfigError(f"cannot make key {name}: {why}")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    for path in (public, secret):
        if path.exists():
            raise ConfigError(f"{path} exists: choose another --name or delete the old key pair first")
    pub_key, secret_key = zmq.curve_keypair()
    old = os.umask(0o077)  # the secret is never readable by others, not even for a moment
    try:
        _write_cert(secret, pub_key, secret_key, metadata)
        _write_cert(public, pub_key, None, metadata)
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret


def set_identity(directory: Path, name: str, role: str, identity: str = "") -> bool:
    """Give the existing pair `name` this identity, keeping its keys; False when it already has it.

    The identity is the controller's assertion about a key, not key material: rewriting it
    lets a deployment made before identities existed gain them without new keys."""
    identity = identity or name
    for one in filter(None, role.split(",")):
        why = check_role_name(one, identity)
        if why is not None:
            raise ConfigError(f"cannot set the identity of key {name}: {why}")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    wanted = {"name": identity, "role": role}
    if all({"name": name, "role": "", **read_metadata(p)} == wanted for p in (public, secret)):
        return False
    pub_key, secret_key = zmq.auth.load_certificate(secret)
    if secret_key is None:
        raise ConfigError(f"{secret} holds no secret key: delete the pair {name} and generate it again")
    metadata = {"name": identity, "role": role}
    _write_cert(secret, pub_key, secret_key, metadata)
    _write_cert(public, pub_key, None, metadata)
    return True


def _write_cert(path: Path, public: bytes, secret: bytes | None, metadata: dict[str, str] | None) -> None:
    """A ZPL certificate (zcert's format, which zmq.auth.load_certificate reads), with the
    metadata in the public file too: pyzmq's create_certificates puts it in the secret only."""
    lines = ["#   ZeroMQ CURVE " + ("Secret" if secret else "Public") + " Certificate (schedctl keys generate)",
             "metadata"]
    lines += [f'    {key} = "{value}"' for key, value in (metadata or {}).items()]
    lines += ["curve", f'    public-key = "{public.decode("ascii")}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
