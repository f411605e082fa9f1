"""The wire: envelope, message schemas, hardened codec, socket factory, logging.

This package imports no other part of schedctl: the wire knows no daemon.
"""

from daemons.bus.envelope import VERSION, Envelope, decode, encode
from daemons.bus.errors import (
    BackendError,
    ConfigError,
    DecodeError,
    SchedctlError,
    SchemaError,
    WireError,
)
from daemons.bus.sockets import SocketOptions, make_socket, parse_frame, split_router_frames

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
