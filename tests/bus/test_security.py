"""CURVE + ZAP on real TCP sockets: a listed client key gets through, an unlisted one is refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from daemons.bus import make_socket
from daemons.bus.security import Security, SecurityConfig, generate, stop_zap
from daemons.core.errors import ConfigError


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server pair, a listed client `good` and an unlisted client `bad`, each in its own curve_dir."""
    generate(tmp_path / "master", "server")
    for name in ("good", "bad"):
        generate(tmp_path / "master", name)
    (tmp_path / "allowed").mkdir()
    shutil.copy(tmp_path / "master/good.key", tmp_path / "allowed/good.key")
    for host in ("srv", "good", "bad"):
        d = tmp_path / host
        d.mkdir()
        shutil.copy(tmp_path / "master/server.key", d / "server.key")
        if host == "srv":
            shutil.copy(tmp_path / "master/server.key_secret", d / "server.key_secret")
            shutil.copy(tmp_path / "master/good.key", d / "client.key")  # any pair: unused by a pure server
            shutil.copy(tmp_path / "master/good.key_secret", d / "client.key_secret")
        else:
            shutil.copy(tmp_path / f"master/{host}.key", d / "client.key")
            shutil.copy(tmp_path / f"master/{host}.key_secret", d / "client.key_secret")
    return tmp_path


def security(keys: Path, host: str) -> Security:
    return Security(SecurityConfig(curve_dir=str(keys / host), allowed_keys_dir=str(keys / "allowed")))


@pytest.fixture
def server(keys: Path) -> Iterator[tuple[Any, str]]:
    ctx: zmq.Context[Any] = zmq.Context()
    sec = security(keys, "srv")
    sec.start_zap(ctx)
    sock = make_socket(ctx, zmq.ROUTER, curve=sec.bind_server())
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close()
    stop_zap(ctx)
    ctx.term()


def ask(keys: Path, host: str, endpoint: str) -> bytes | None:
    """Send one message as `host`; the server's reply, or None when nothing came through."""
    ctx: zmq.Context[Any] = zmq.Context()
    try:
        sock = make_socket(ctx, zmq.DEALER, curve=security(keys, host).client)
        sock.connect(endpoint)
        sock.send(b"hello", flags=zmq.DONTWAIT)
        return sock.recv() if sock.poll(1500) else None
    except zmq.Again:
        return None
    finally:
        ctx.destroy(linger=0)


def serve_once(sock: Any) -> bytes | None:
    if not sock.poll(1500):
        return None
    identity, payload = sock.recv_multipart()
    sock.send_multipart([identity, payload.upper()])
    return bytes(sock.get(zmq.LAST_ENDPOINT))


def test_listed_key_admitted_unlisted_refused(keys: Path, server: tuple[Any, str]) -> None:
    import threading

    sock, endpoint = server
    seen: list[bytes | None] = []
    t = threading.Thread(target=lambda: seen.append(serve_once(sock)))
    t.start()
    assert ask(keys, "good", endpoint) == b"HELLO"
    t.join()
    t = threading.Thread(target=lambda: seen.append(serve_once(sock)))
    t.start()
    assert ask(keys, "bad", endpoint) is None  # handshake refused by ZAP: nothing reaches the ROUTER
    t.join()
    assert seen[1] is None


def test_plain_client_refused(keys: Path, server: tuple[Any, str]) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    sock = make_socket(ctx, zmq.DEALER)
    sock.connect(server[1])
    sock.send(b"hello")
    assert not server[0].poll(800)
    ctx.destroy(linger=0)


def test_server_socket_needs_zap(keys: Path) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    with pytest.raises(RuntimeError, match="ZAP"):
        make_socket(ctx, zmq.ROUTER, curve=security(keys, "srv").bind_server())
    ctx.term()


def test_disabled_by_default() -> None:
    sec = Security(SecurityConfig())
    assert sec.client is None and sec.bind_server() is None and sec.start_zap(zmq.Context.instance()) is None


def test_config_errors(keys: Path) -> None:
    with pytest.raises(ConfigError, match=r"client\.key_secret"):
        Security(SecurityConfig(curve_dir=str(keys / "master"), allowed_keys_dir=str(keys / "allowed")))
    with pytest.raises(ConfigError, match=r"server\.key_secret is missing"):
        security(keys, "good").bind_server()
    (keys / "good/client.key_secret").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        security(keys, "good")


def test_generate_refuses_overwrite_and_keeps_secret_private(tmp_path: Path) -> None:
    public, secret = generate(tmp_path, "n1")
    assert secret.stat().st_mode & 0o777 == 0o600 and public.stat().st_mode & 0o777 == 0o644
    with pytest.raises(ConfigError, match="exists"):
        generate(tmp_path, "n1")


def test_enforced_zap_domain_refuses_when_no_handler_runs(keys: Path) -> None:
    """Defence in depth: even if the start_zap guard were bypassed, the server socket's
    ZAP_ENFORCE_DOMAIN makes a missing handler fail the handshake instead of admitting anyone."""
    ctx: zmq.Context[Any] = zmq.Context()
    server = security(keys, "srv").bind_server()
    assert server is not None
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, server.secret)
    sock.setsockopt(zmq.ZAP_DOMAIN, b"schedctl")
    sock.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    assert ask(keys, "good", f"tcp://127.0.0.1:{port}") is None
    ctx.destroy(linger=0)
