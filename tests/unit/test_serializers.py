"""Serializers: what each round-trips, what each refuses, and how one is chosen."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.serializers import SERIALIZERS, Auto, Json, Msgpack, Pickle, Raw, get_serializer

JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(1 << 63), (1 << 64) - 1),  # msgpack's range
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=10,
)


def test_raw_keeps_bytes_and_refuses_the_rest() -> None:
    raw = Raw()
    assert raw.dumps(b"\x00\xff") == b"\x00\xff"
    assert raw.dumps(bytearray(b"ab")) == b"ab"
    assert raw.dumps(memoryview(b"ab")) == b"ab"
    assert raw.loads(b"ab") == b"ab"
    with pytest.raises(TypeError, match="raw serializer stores bytes, not str"):
        raw.dumps("text")
    with pytest.raises(TypeError, match="not int"):
        raw.dumps(1)


def test_auto_keeps_bytes_as_they_are_and_pickles_the_rest() -> None:
    auto, value = Auto(), b"k" * 100
    assert auto.dumps(value) is value  # no copy, no header
    assert auto.loads(value) is value
    assert auto.dumps(b"") == b"" and auto.loads(b"") == b""
    assert auto.dumps("text") == pickle.dumps("text", protocol=pickle.HIGHEST_PROTOCOL)
    # Bytes that look like a pickle's first byte are pickled, so they read back as bytes.
    looks_pickled = b"\x80\x05K\x01."
    assert auto.dumps(looks_pickled) != looks_pickled
    assert auto.loads(auto.dumps(looks_pickled)) == looks_pickled


@given(st.one_of(st.binary(), JSON_VALUES, st.tuples(st.binary(), st.integers())))
def test_auto_round_trips_bytes_and_objects(value: object) -> None:
    assert Auto().loads(Auto().dumps(value)) == value


@given(JSON_VALUES)
def test_json_round_trips_json_values(value: object) -> None:
    assert Json().loads(Json().dumps(value)) == value


@given(st.binary())
def test_json_passes_bytes_through(value: bytes) -> None:
    assert Json().loads(Json().dumps(value)) == value


def test_json_hands_back_bytes_it_did_not_write() -> None:
    assert Json().loads(b"not json {") == b"not json {"
    assert Json().loads(b'{"a":1}') == {"a": 1}  # written by another client
    assert Json().dumps("é") == '"é"'.encode()  # UTF-8, not \\u escapes
    with pytest.raises(TypeError):
        Json().dumps(object())


@given(st.one_of(JSON_VALUES, st.binary(), st.sets(st.integers()), st.complex_numbers()))
def test_pickle_round_trips_any_picklable_object(value: object) -> None:
    loaded = Pickle().loads(Pickle().dumps(value))
    assert loaded == value or (loaded != loaded and value != value)  # NaN inside


@given(JSON_VALUES)
def test_msgpack_round_trips(value: object) -> None:
    assert Msgpack().loads(Msgpack().dumps(value)) == value


def test_serializers_are_chosen_by_name() -> None:
    assert sorted(SERIALIZERS) == ["auto", "json", "msgpack", "pickle", "raw"]
    for name, serializer in SERIALIZERS.items():
        assert get_serializer(name) is serializer
        assert serializer.name == name
    custom = Raw(name="mine")
    assert get_serializer(custom) is custom
    with pytest.raises(ValueError, match="choose one of auto, json, msgpack, pickle, raw"):
        get_serializer("yaml")
