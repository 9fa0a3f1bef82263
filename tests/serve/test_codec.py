import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpi_client import msgpack_numpy as openpi

from embodia.serve.codec import (
    ALLOWED_DTYPES,
    BudgetExceeded,
    Codec,
    DecodeError,
    DecodeLimits,
    packb,
    unpackb,
)

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
    (_array_map(",0=", [1], b"\0" * 8), "array dtype ',0=' is not allowed"),  # np.dtype() raises SyntaxError
    (_array_map("(2,)f4", [1], b"\0" * 8), "not allowed"),  # a subarray dtype
    (_array_map("f4,f4", [1], b"\0" * 8), "not allowed"),  # a structured dtype
    (_array_map("float32", [2], b"\0" * 8), "not allowed"),  # only what dtype.str writes
    (_array_map("<M8[s]", [1], b"\0" * 8), "not allowed"),
    (_array_map(7, [1], b"\0" * 8), "dtype must be a string"),
    (msgpack.packb({b"__npgeneric__": True, b"data": 1, b"dtype": ",0="}), "not allowed"),
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


def test_every_dtype_openpi_sends_for_numbers_is_allowed():
    for t in ("?", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"):
        for order in "<>":
            arr = np.arange(3).astype(np.dtype(t).newbyteorder(order))
            assert arr.dtype.str in ALLOWED_DTYPES
            np.testing.assert_array_equal(unpackb(openpi.packb({"x": arr}))["x"], arr)


@pytest.mark.parametrize("raw, match", [
    (msgpack.packb([{}] * 20_000), "more than 10000 items"),
    (msgpack.packb({"a": [[0] * 100] * 200}), "more than 10000 items"),
    (b"\xdd\xff\xff\xff\xff" + b"\x80" * 50_000, "more than 10000 items"),  # a count it cannot back
    (b"\x91" * 40 + b"\xc0", "deeper than 32 levels"),
    (b"\xc4\x10" + b"\0" * 16, "exceeds the limit of 8 bytes"),
])
def test_messages_past_the_structure_budget_are_refused_before_decoding(raw, match):
    limits = DecodeLimits(max_bytes=8) if "limit of 8" in match else DecodeLimits()
    with pytest.raises(BudgetExceeded, match=match):
        unpackb(raw, limits)


def test_a_4_mib_message_of_empty_maps_is_refused_before_msgpack_sees_it(monkeypatch):
    """The structure walk stops at the item budget; msgpack (which takes seconds on such a
    message) is never asked to decode it."""
    import embodia.serve.codec as codec

    def never(*a, **k):
        raise AssertionError("msgpack.unpackb was called on a message past the budget")

    monkeypatch.setattr(codec.msgpack, "unpackb", never)
    n = 4 * 2**20 - 5
    raw = b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n  # valid msgpack: a list of n empty maps
    with pytest.raises(BudgetExceeded, match="more than"):
        unpackb(raw)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=300)
    | st.binary(max_size=70_000),
    lambda kids: st.lists(kids, max_size=20) | st.dictionaries(st.text(max_size=20), kids, max_size=20),
    max_leaves=40)


@settings(max_examples=150, deadline=None)
@given(v=values)
def test_the_budget_walk_accepts_every_valid_message_msgpack_accepts(v):
    raw = msgpack.packb(v)
    assert unpackb(raw) == msgpack.unpackb(raw)
    with pytest.raises(DecodeError):
        unpackb(raw[:-1])
