"""The envelope every frame travels in: msgpack `[version, type, sender, id, body]`.

Decoding is hardened: the frame size is capped before msgpack sees it, string, binary,
array and map lengths are capped inside it, extension types are refused, map keys must be
strings, and the body is validated against the message type's schema. Anything wrong
raises a `WireError`; receivers drop the frame, log one line and carry on.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from daemons.core.errors import DecodeError
from daemons.core.messages import MESSAGE_TYPES, NAME_PATTERN
from daemons.core.schema import MAX_FRAME_BYTES, from_dict, to_dict
from daemons.core.slotted import positional

VERSION = 1
MAX_STR_BYTES = 1 << 20
MAX_ITEMS = 1 << 14
_NAME = re.compile(NAME_PATTERN.regex)
MAX_NAME_CHARS = 256  # as NAME_PATTERN's regex says


@dataclass(frozen=True, slots=True)
class Envelope:
    type: str
    sender: str
    id: str
    body: Any  # one of the dataclasses in messages.MESSAGE_TYPES
    version: int = VERSION


_envelope = positional(Envelope)  # Envelope(...) with every field, at half the cost (slotted.py)


def encode(body: Any, sender: str, msg_id: str = "") -> bytes:
    """Pack a message dataclass into one frame."""
    frame: bytes = _packer().pack([VERSION, body.TYPE, sender, msg_id, to_dict(body)])
    return frame


_LOCAL = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's Packer: `msgpack.packb` builds one per call, which costs a third of
    encoding a Placement. One per thread, as a Packer's buffer is not shared safely; it
    resets its buffer after every pack, also after a failed one."""
    try:
        packer: msgpack.Packer = _LOCAL.packer
    except AttributeError:
        packer = _LOCAL.packer = msgpack.Packer(use_bin_type=True)
    return packer


def _is_name(value: str) -> bool:
    """NAME_PATTERN's verdict; for a printable ASCII str without the regex (schema.Pattern)."""
    if value.isascii() and value.isprintable() and len(value) <= MAX_NAME_CHARS:
        return True
    return _NAME.fullmatch(value) is not None


def decode(frame: bytes) -> Envelope:
    """Unpack and validate one frame, raising DecodeError or SchemaError."""
    if len(frame) > MAX_FRAME_BYTES:
        raise DecodeError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}")
    raw = _unpack(frame)
    if not isinstance(raw, list) or len(raw) != 5:
        raise DecodeError("envelope must be a 5-element array [version, type, sender, id, body]")
    version, mtype, sender, msg_id, body = raw
    if version != VERSION:
        raise DecodeError(f"unsupported envelope version {version!r} (this daemon speaks {VERSION})")
    if not (isinstance(mtype, str) and isinstance(sender, str) and isinstance(msg_id, str)):
        raise DecodeError("envelope type, sender and id must be strings")
    if not (_is_name(sender) and _is_name(msg_id)):
        # Both end up in logs, journal fields and replies: printable and short, or refused.
        raise DecodeError("envelope sender and id must be at most 256 characters without control characters")
    cls = MESSAGE_TYPES.get(mtype)
    if cls is None:
        raise DecodeError(f"unknown message type {mtype[:40]!r}")
    return _envelope(mtype, sender, msg_id, from_dict(cls, body, mtype), version)


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not accepted")


def _unpack(frame: bytes) -> Any:
    try:
        return msgpack.unpackb(
            frame,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_refuse_ext,
            max_str_len=MAX_STR_BYTES,
            max_bin_len=MAX_STR_BYTES,
            max_array_len=MAX_ITEMS,
            max_map_len=MAX_ITEMS,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError,
            UnicodeDecodeError) as exc:
        raise DecodeError(f"not a msgpack frame: {type(exc).__name__}: {str(exc)[:80]}") from None


__all__ = ["MAX_FRAME_BYTES", "MAX_ITEMS", "MAX_STR_BYTES", "VERSION", "Envelope", "decode", "encode"]
