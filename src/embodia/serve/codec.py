"""msgpack with numpy arrays, byte-for-byte the format of openpi-client's `msgpack_numpy`.

Why our own copy: openpi-client pins numpy<2 and pulls dm-tree/pillow, and its decoder builds
an array from whatever dtype string a peer sends. This one writes exactly what openpi writes
(an array is a map {b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape":
[...]}; a numpy scalar is {b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}) and, on
the way in, accepts only plain numeric dtypes and a shape that matches the bytes, so nothing
from the network is ever unpickled or reinterpreted as objects.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

# bool, signed/unsigned int, float: what observations and actions are made of.
ALLOWED_KINDS = frozenset("biuf")
MAX_DIMS = 8


class DecodeError(ValueError):
    """A message that is not valid msgpack or holds an array we refuse to build."""


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
    if not isinstance(raw, str) or len(raw) > 8:
        raise DecodeError(f"array dtype must be a short string, got {raw!r:.40}")
    try:
        dt = np.dtype(raw)
    except TypeError:
        raise DecodeError(f"unknown array dtype {raw!r}") from None
    if dt.kind not in ALLOWED_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise DecodeError(f"array dtype {raw!r} is not allowed (bool, int, uint, float only)")
    return dt


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


def unpackb(data: bytes) -> Any:
    """Decode one message; every failure is a DecodeError with a short reason."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook)
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError, RecursionError) as e:
        raise DecodeError(f"malformed msgpack ({type(e).__name__})") from None
