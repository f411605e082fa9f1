"""The wire: envelope and codec, sockets (one factory for every socket), security, client;
and (imported on its own, `daemons.bus.metrics`) every daemon's Prometheus endpoint.

The plain messages and the exception tree live on the ground floor (`daemons.core`);
this package adds what needs ZeroMQ and msgpack. It knows no daemon.
"""

from daemons.bus.envelope import VERSION, Envelope, decode, encode
from daemons.bus.sockets import SocketOptions, make_socket, parse_frame, split_router_frames
from daemons.core.errors import (
    BackendError,
    ConfigError,
    DecodeError,
    SchedctlError,
    SchemaError,
    WireError,
)

__all__ = [
    "VERSION",
    "BackendError",
    "ConfigError",
    "DecodeError",
    "Envelope",
    "SchedctlError",
    "SchemaError",
    "SocketOptions",
    "WireError",
    "decode",
    "encode",
    "make_socket",
    "parse_frame",
    "split_router_frames",
]
