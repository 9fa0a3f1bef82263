"""msgpack with numpy arrays, byte-for-byte the format of openpi-client's `msgpack_numpy`.

Why our own copy: openpi-client pins numpy<2 and pulls dm-tree/pillow, and its decoder builds
an array from whatever dtype string a peer sends. This one writes exactly what openpi writes
(an array is a map {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape":
[...]}; a numpy scalar is {b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}) and, on
the way in, accepts only plain numeric dtypes and a shape that matches the bytes, so nothing
from the network is ever unpickled or reinterpreted as objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

# Exactly the dtype strings numpy's `dtype.str` gives (what openpi-client's msgpack_numpy
# sends) for bool, signed/unsigned int and float, both byte orders. A peer's string is looked up
# here and never handed to `np.dtype`, whose parser accepts far more (and raises SyntaxError on
# some inputs).
ALLOWED_DTYPES: dict[str, np.dtype] = {
    np.dtype(t).newbyteorder(o).str: np.dtype(t).newbyteorder(o)
    for t in ("?", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8")
    for o in "<>"
}
ALLOWED_DTYPE_NAMES = "bool, uint8-64, int8-64, float16/32/64"
MAX_DIMS = 8


class DecodeError(ValueError):
    """A message that is not valid msgpack or holds an array we refuse to build."""


class BudgetExceeded(DecodeError):
    """A message whose structure (nesting, item count, size) is past the decoder's budget."""


@dataclass(frozen=True)
class DecodeLimits:
    """The structure budget of one message, checked before anything is built: a valid
    observation has a few dozen items and depth 3, so these are generous for robots and small
    enough that a hostile message (millions of empty maps) costs milliseconds, not seconds."""

    max_bytes: int = 4 * 2**20
    max_depth: int = 32  # nested maps/arrays
    max_items: int = 10_000  # every msgpack object (map keys and values, list elements) counts

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_depth, self.max_items) < 1:
            raise ValueError(f"invalid decode limits {self}")


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray | np.generic) and obj.dtype.kind in ("V", "O", "c"):
        raise ValueError(f"Unsupported dtype: {obj.dtype}")
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str,
                b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _dtype(raw: Any) -> np.dtype:
    if isinstance(raw, bytes):
        raw = raw.decode("ascii", "replace")
    if not isinstance(raw, str):
        raise DecodeError(f"array dtype must be a string, got {type(raw).__name__}")
    dt = ALLOWED_DTYPES.get(raw)
    if dt is None:
        raise DecodeError(f"array dtype {raw[:40]!r} is not allowed ({ALLOWED_DTYPE_NAMES} only)")
    return dt


# msgpack type bytes -> payload bytes that follow (fixed-size scalars and fixext, type byte
# included) or (length-field bytes, extra bytes) for str/bin/ext.
_FIXED = {0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4,
          0xd3: 8, 0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17}
_SIZED = {0xc4: (1, 0), 0xc5: (2, 0), 0xc6: (4, 0), 0xc7: (1, 1), 0xc8: (2, 1), 0xc9: (4, 1),
          0xd9: (1, 0), 0xda: (2, 0), 0xdb: (4, 0)}
# array16/32, map16/32 -> (count-field bytes, children per count)
_CONTAINERS = {0xdc: (2, 1), 0xdd: (4, 1), 0xde: (2, 2), 0xdf: (4, 2)}


def check_structure(data: bytes, limits: DecodeLimits) -> None:
    """Walk the msgpack headers (skipping str/bin payloads) and refuse a message past the
    budget before msgpack builds anything: the walk stops after `max_items` objects, so its
    cost is bounded however the message is made."""
    if len(data) > limits.max_bytes:
        raise BudgetExceeded(f"message of {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes")
    n, pos, items, remaining = len(data), 0, 0, 1
    stack: list[int] = []  # objects still due in each enclosing container
    max_items, max_depth = limits.max_items, limits.max_depth
    while True:
        if remaining == 0:
            if not stack:
                break
            remaining = stack.pop()
            continue
        if pos >= n:
            raise DecodeError("malformed msgpack (truncated)")
        b = data[pos]
        pos += 1
        remaining -= 1
        items += 1
        if items > max_items:
            raise BudgetExceeded(f"message has more than {max_items} items (maps, lists and values)")
        children = 0
        if b <= 0x7f or b >= 0xe0 or b in (0xc0, 0xc2, 0xc3):
            pass
        elif b <= 0x8f:
            children = 2 * (b & 0x0f)
        elif b <= 0x9f:
            children = b & 0x0f
        elif b <= 0xbf:
            pos += b & 0x1f
        elif b in _FIXED:
            pos += _FIXED[b]
        elif b in _SIZED:
            k, extra = _SIZED[b]
            pos += k + extra + int.from_bytes(data[pos:pos + k], "big")
        elif b in _CONTAINERS:
            k, per = _CONTAINERS[b]
            children = per * int.from_bytes(data[pos:pos + k], "big")
            pos += k
        else:  # 0xc1, never used
            raise DecodeError("malformed msgpack (invalid type byte)")
        if children:
            if len(stack) >= max_depth:
                raise BudgetExceeded(f"message nests deeper than {max_depth} levels")
            stack.append(remaining)
            remaining = children
    if pos > n:
        raise DecodeError("malformed msgpack (truncated)")
    if pos < n:
        raise DecodeError("malformed msgpack (trailing bytes)")


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dt = _dtype(obj.get(b"dtype"))
        data, shape = obj.get(b"data"), obj.get(b"shape")
        if not isinstance(data, bytes):
            raise DecodeError("array data must be bytes")
        if (not isinstance(shape, list | tuple) or len(shape) > MAX_DIMS
                or not all(type(n) is int and n >= 0 for n in shape)):
            raise DecodeError(f"array shape must be a list of at most {MAX_DIMS} non-negative ints")
        n = 1
        for d in shape:
            n *= d
        if n * dt.itemsize != len(data):
            raise DecodeError(f"array of shape {tuple(shape)} and dtype {dt.str} needs "
                              f"{n * dt.itemsize} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=dt).reshape(shape)
    if b"__npgeneric__" in obj:
        dt = _dtype(obj.get(b"dtype"))
        value = obj.get(b"data")
        if not isinstance(value, bool | int | float):
            raise DecodeError("numpy scalar data must be a number")
        try:
            return dt.type(value)
        except (OverflowError, ValueError):
            raise DecodeError(f"numpy scalar {value!r:.40} does not fit {dt.str}") from None
    return obj


class Codec:
    """One per connection: a reusable Packer (msgpack's buffer is not thread-safe)."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(default=_pack_default)

    def pack(self, obj: Any) -> bytes:
        return self._packer.pack(obj)


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, default=_pack_default)


def unpackb(data: bytes, limits: DecodeLimits | None = None) -> Any:
    """Decode one message within `limits`; every failure is a DecodeError with a short
    reason (BudgetExceeded for a message past the budget)."""
    check_structure(data, limits or DecodeLimits())
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, RecursionError) as e:
        raise DecodeError(f"malformed msgpack ({type(e).__name__})") from None
