"""The client's value rule (client/values.py): what is stored for each value, and what a
reader makes of bytes written by anyone."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.client.errors import DecodeError
from geocache.client.values import MARK, Values, check_name
from geocache.serializers import Json, get_serializer

JSON = Values(get_serializer("json"))
TEXT = Values(get_serializer("json"), decode=True)
TYPED = Values(get_serializer("json"), typed=True)
OBJECTS = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.binary())
def test_bytes_are_stored_as_they_are_unless_they_start_with_the_mark(value: bytes) -> None:
    stored = JSON.dumps(value)
    assert stored == value or (value[:1] == MARK and stored == b"\xc1bytes:" + value)
    assert JSON.loads(stored) == value


@given(st.text())
def test_text_is_its_utf8_and_never_looks_marked(value: str) -> None:
    assert JSON.dumps(value) == value.encode()
    assert JSON.dumps(value)[:1] != MARK  # 0xC1 is never in UTF-8
    assert JSON.loads(value.encode()) == value.encode()  # plain: bytes
    assert TEXT.loads(value.encode()) == value  # or str, with decode=True


@given(st.integers())
def test_ints_are_decimal_text(value: int) -> None:
    assert JSON.dumps(value) == str(value).encode()
    assert TYPED.loads(TYPED.dumps(value)) == value


@given(OBJECTS.filter(lambda v: type(v) is not str))
def test_other_objects_are_marked_with_the_serializer(value: object) -> None:
    stored = JSON.dumps(value)
    assert stored.startswith(b"\xc1json:")
    assert JSON.loads(stored) == value


@given(st.one_of(OBJECTS, st.binary(), st.integers()))
def test_typed_values_come_back_as_they_were(value: object) -> None:
    loaded = TYPED.loads(TYPED.dumps(value))
    assert loaded == value and type(loaded) is type(value)


def test_what_a_typed_client_stores() -> None:
    assert TYPED.dumps("hi") == b"\xc1str:hi"
    assert TYPED.dumps(b"hi") == b"\xc1bytes:hi"
    assert TYPED.dumps(7) == b"7" and TYPED.dumps(True) == b"\xc1json:true"
    assert TYPED.loads(b"7") == 7 and TYPED.loads(b"-12") == -12
    for not_int in (b"007", b"+7", b"-0", b"7.0", b" 7", b""):
        assert TYPED.loads(not_int) == not_int  # only what str(int) writes is an int


def test_values_written_elsewhere_read_back_plain() -> None:
    assert JSON.loads(b'{"a":1}') == b'{"a":1}'  # JSON text without the mark is text
    assert JSON.loads(b"\xc1") == b"\xc1"  # a mark without a name and colon
    assert JSON.loads(b"\xc1yaml:x") == b"\xc1yaml:x"  # a name nobody here knows
    assert JSON.loads(b"\xc1" + b"x" * 40 + b":y") == b"\xc1" + b"x" * 40 + b":y"
    with pytest.raises(DecodeError, match="not UTF-8"):
        TEXT.loads(b"\xff")


def test_other_serializers_marks_are_read_but_pickle_only_by_pickle() -> None:
    msgpacked = Values(get_serializer("msgpack")).dumps({"a": 1})
    assert msgpacked.startswith(b"\xc1msgpack:")
    assert JSON.loads(msgpacked) == {"a": 1}  # msgpack and JSON run no code: anyone reads
    pickled = b"\xc1pickle:" + pickle.dumps({1, 2})
    with pytest.raises(DecodeError, match="unpickles nothing"):
        JSON.loads(pickled)
    assert Values(get_serializer("pickle")).loads(pickled) == {1, 2}
    with pytest.raises(DecodeError, match="marked msgpack"):
        Values(get_serializer("msgpack")).loads(b"\xc1msgpack:\xc1")


def test_raw_stores_bytes_str_and_int_only() -> None:
    raw = Values(get_serializer("raw"))
    assert raw.dumps("é") == "é".encode() and raw.dumps(b"x") == b"x" and raw.dumps(3) == b"3"
    with pytest.raises(TypeError):
        raw.dumps({"a": 1})


def test_serializer_names_must_fit_in_a_mark() -> None:
    assert check_name(Json()) == b"json"
    for bad in ("", "str", "bytes", "has:colon", "UPPER", "x" * 33):
        with pytest.raises(ValueError, match="cannot mark values"):
            Values(Json(name=bad))
