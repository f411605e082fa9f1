"""Configuration and process of one emulated TGI instance (`schedctl start emulator`).

    config = EmulatorConfig(model_id="facebook/opt-125m", port=8080, gpu="a100-80gb")
    run(config)        # serves until SIGTERM / SIGINT, then returns (exit status 0)

`EmulatorConfig` and `resolve()` (the limits TGI's launcher would infer) are in `config.py`,
re-exported here.

Resources are bounded as a public server's must be: bodies over `payload_limit` (TGI's
2 MB default) get 413, JSON nests at most 128 deep (serde_json's limit), at most
`max_connections` connections are served at once (uvicorn's `limit_concurrency`: 503
beyond; never more than the file-descriptor limit allows), idle keep-alive connections
close after `keep_alive_s`, and running out of file descriptors or memory is logged as
one line per cause every few seconds (with a count of the ones suppressed), never as a
traceback per failed accept.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import resource
import socket
import time
from types import FrameType
from typing import Any

import uvicorn

from daemons.core.errors import ConfigError
from daemons.emulator.config import DEFAULT_INIT_SECONDS, DEFAULT_MAX_TOTAL_TOKENS, EmulatorConfig, resolve
from daemons.emulator.tgi_routes import create_app

__all__ = ["DEFAULT_INIT_SECONDS", "DEFAULT_MAX_TOTAL_TOKENS", "EmulatorConfig", "bind_socket", "resolve", "run"]

log = logging.getLogger("schedctl.emulator")

#: Open streams get this long to finish after SIGTERM before they are cut.
SHUTDOWN_GRACE_SECONDS = 5
#: File descriptors kept back from connections (listening socket, logs, the event loop's own).
FD_RESERVE = 32
#: Resource errors are logged at most once per cause in this many seconds.
RESOURCE_LOG_INTERVAL_S = 10.0
RESOURCE_ERRNOS = {errno.EMFILE: "EMFILE", errno.ENFILE: "ENFILE", errno.ENOBUFS: "ENOBUFS",
                   errno.ENOMEM: "ENOMEM"}


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready socket on host:port, or a ConfigError saying how to fix it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; pass a free --port "
                f"(or stop the process holding it: ss -ltnp 'sport = :{port}')"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; check --hostname") from None
    return sock


def raise_fd_limit() -> int:
    """Raise the soft file-descriptor limit to the hard one (as Go's runtime does); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(requested: int, fd_limit: int) -> int:
    """Connections served at once: what was asked, but never past the fds this process has."""
    return max(min(requested, fd_limit - FD_RESERVE), 1)


class ResourceErrorLog:
    """A loop exception handler: resource errors (EMFILE, ...) become one line per cause per
    `RESOURCE_LOG_INTERVAL_S`, with the count suppressed since; anything else goes on to
    asyncio's default handler."""

    def __init__(self, interval_s: float = RESOURCE_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        cause = RESOURCE_ERRNOS.get(exc.errno or 0) if isinstance(exc, OSError) else None
        if cause is None:
            loop.default_exception_handler(context)
            return
        now = time.monotonic()
        if now - self._last.get(cause, -self.interval_s) < self.interval_s:
            self._suppressed[cause] = self._suppressed.get(cause, 0) + 1
            return
        self._last[cause] = now
        suppressed = self._suppressed.pop(cause, 0)
        log.error("%s: %s (%s); %d more suppressed in the last %.0f s; raise LimitNOFILE/ulimit -n or "
                  "lower --max-connections", cause, exc.strerror if isinstance(exc, OSError) else exc,
                  context.get("message", ""), suppressed, self.interval_s)


class _Server(uvicorn.Server):
    """uvicorn's server, but a SIGTERM/SIGINT ends in a clean return (exit status 0)
    instead of re-raising the signal after the graceful shutdown, and resource errors
    of the accept loop are logged by `ResourceErrorLog`."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        asyncio.get_running_loop().set_exception_handler(ResourceErrorLog())
        await super().startup(sockets)


def run(config: EmulatorConfig) -> None:
    """Serve the emulated instance in the foreground until SIGTERM or SIGINT."""
    deployment = resolve(config)
    sock = bind_socket(config.hostname, config.port)
    app = create_app(deployment)
    uv_config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's records go through our handler: rate-limited per cause (bus/logs.py)
        lifespan="on",
        http="auto",  # httptools and uvloop when installed (uvicorn[standard]); h11 + asyncio otherwise
        loop="auto",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        limit_concurrency=connection_limit(config.max_connections, raise_fd_limit()),
        timeout_keep_alive=config.keep_alive_s,
    )
    log.info(
        "emulating %s on %s at http://%s:%d: ready in %.2f s, KV budget %d tokens",
        deployment.model_id, deployment.gpu.name, config.hostname, sock.getsockname()[1],
        deployment.load_seconds, deployment.engine_limits.max_batch_total_tokens,
    )
    _Server(uv_config).run(sockets=[sock])
