import msgpack
import numpy as np
import pytest
from openpi_client import msgpack_numpy as openpi

from embodia.serve.codec import Codec, DecodeError, packb, unpackb

SAMPLES = [
    np.arange(12, dtype=np.float32).reshape(3, 4),
    np.zeros((96, 96, 3), dtype=np.uint8),
    np.array([True, False]),
    np.arange(5, dtype=">i8"),
    np.zeros((0, 7), dtype=np.float64),
    np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
]


@pytest.mark.parametrize("arr", SAMPLES, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_bytes_match_openpi_client_and_round_trip_both_ways(arr):
    msg = {"actions": arr, "nested": {"x": arr, "s": "text"}, "n": 3, "f": np.float32(1.5)}
    ours = packb(msg)
    assert ours == openpi.packb(msg) == Codec().pack(msg)
    for decoded in (unpackb(ours), openpi.unpackb(ours)):
        np.testing.assert_array_equal(decoded["actions"], arr)
        assert decoded["actions"].dtype == arr.dtype and decoded["nested"]["s"] == "text"
        assert decoded["f"] == np.float32(1.5) and type(decoded["f"]) is np.float32


def _array_map(dtype, shape, data):
    return msgpack.packb({b"__ndarray__": True, b"data": data, b"dtype": dtype, b"shape": shape})


@pytest.mark.parametrize("raw, match", [
    (_array_map("|O", [1], b"\0" * 8), "not allowed"),
    (_array_map("|V8", [1], b"\0" * 8), "not allowed"),
    (_array_map("<U2", [1], b"\0" * 8), "not allowed"),
    (_array_map("<c8", [1], b"\0" * 8), "not allowed"),
    (_array_map("nonsense", [1], b"\0" * 8), "dtype"),
    (_array_map("<f4", [3], b"\0" * 8), "needs 12 bytes, got 8"),
    (_array_map("<f4", [-2], b"\0" * 8), "shape"),
    (_array_map("<f4", "2", b"\0" * 8), "shape"),
    (_array_map("<f4", [2], "not bytes"), "bytes"),
    (b"\xc1", "malformed"),
    (packb({"a": np.zeros(4)})[:-3], "malformed"),
    (packb([1, 2]) + b"\x01", "malformed"),
])
def test_hostile_messages_are_refused_without_building_objects(raw, match):
    with pytest.raises(DecodeError, match=match):
        unpackb(raw)


def test_refuses_to_pack_object_arrays():
    with pytest.raises(ValueError, match="Unsupported dtype"):
        packb({"x": np.array([object()])})
