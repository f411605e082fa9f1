"""The one exception tree of schedctl.

    SchedctlError                 base of everything schedctl raises on purpose
    ├── ConfigError               a bad flag, file or value; the message names the fix
    ├── WireError                 a frame that cannot be accepted (dropped, logged, never fatal)
    │   ├── DecodeError           not msgpack, wrong envelope shape, too big, unknown version
    │   └── SchemaError           a known message type whose body does not match its schema
    └── BackendError              an inference backend failed or is unreachable
"""

from __future__ import annotations


class SchedctlError(Exception):
    """Base class of every error schedctl raises on purpose."""


class ConfigError(SchedctlError):
    """Bad configuration or input; the message says what is wrong and how to fix it."""


class WireError(SchedctlError):
    """A frame that cannot be accepted; receivers drop it and keep running."""


class DecodeError(WireError):
    """The bytes are not a valid envelope."""


class SchemaError(WireError):
    """The envelope is valid but its body does not match the message type's schema."""


class BackendError(SchedctlError):
    """An inference backend failed or could not be reached."""
