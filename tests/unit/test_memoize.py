"""Memoize keys: equivalent calls share a key, different calls never do."""

from __future__ import annotations

import dataclasses
from collections import namedtuple
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geocache.memoize import KeyMaker, custom_key, qualified_name


def f(a: Any, b: Any = 2, *args: Any, c: Any = 3, **kwargs: Any) -> None:
    pass


KEY = KeyMaker(f)


def key(*args: Any, **kwargs: Any) -> bytes:
    return KEY(args, kwargs)


def test_key_layout_is_namespace_function_digest() -> None:
    namespace, name, digest = key(1).decode().split(":")
    assert (namespace, name) == ("memo", f"{__name__}.f")
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert KeyMaker(f, "users")((1,), {}).startswith(f"users:{__name__}.f:".encode())


def test_equivalent_calls_share_a_key() -> None:
    assert key(1) == key(1, 2) == key(a=1) == key(1, b=2) == key(b=2, a=1) == key(1, c=3)
    assert key(1, x=1, y=2) == key(1, y=2, x=1)
    assert key({"x": 1, "y": 2}) == key({"y": 2, "x": 1})
    assert key({3, 1, 2}) == key({2, 3, 1})
    assert key({1, 9}) == key({9, 1})  # equal sets whose iteration orders differ
    Point = namedtuple("Point", "x y")
    assert key(Point(1, 2)) == key((1, 2))  # equal values


DIFFERENT = [
    (1,),
    (2,),
    (1, 5),
    (1, 2, 3),
    ("1",),
    (1.0,),
    (True,),
    (None,),
    ([1, 2],),
    ((1, 2),),
    ({1: "a"},),
    ({"1": "a"},),
    ({"a": 1},),
    (b"x",),
    ("b'x'",),
    (bytearray(b"x"),),
    ({1, 2},),
    (frozenset({1, 2, 3}),),
    ([[1], 2],),
    ([1, [2]],),
    (Decimal("1"),),
    ("Decimal('1')",),
    ("",),
    ([],),
    ((),),
    ({},),
]


def test_different_calls_get_different_keys() -> None:
    keys = [key(*args) for args in DIFFERENT]
    keys += [key(1, c=4), key(1, z=1), key(1, 2, 3, 4)]
    assert len(set(keys)) == len(keys)


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.integers(), st.text()), inner, max_size=3),
    ),
    max_leaves=8,
)


def strict_equal(x: object, y: object) -> bool:
    """== that also tells apart what Python calls equal across types (1, 1.0, True)."""
    if type(x) is not type(y):
        return False
    if isinstance(x, list | tuple):
        assert isinstance(y, list | tuple)
        return len(x) == len(y) and all(map(strict_equal, x, y))
    if isinstance(x, dict):
        assert isinstance(y, dict)
        return x.keys() == y.keys() and all(strict_equal(x[k], y[k]) for k in x)
    if isinstance(x, float):
        return repr(x) == repr(y)  # 0.0 and -0.0
    return x == y


@given(VALUES, VALUES)
def test_keys_collide_only_for_equal_values(x: object, y: object) -> None:
    assert (key(x) == key(y)) is strict_equal(x, y)


def test_methods_include_self() -> None:
    @dataclasses.dataclass
    class Repo:
        name: str

        def find(self, ident: int) -> None:
            pass

    make = KeyMaker(Repo.find)
    assert make((Repo("a"), 1), {}) == make((Repo("a"),), {"ident": 1})
    assert make((Repo("a"), 1), {}) != make((Repo("b"), 1), {})


def test_arguments_that_do_not_bind_raise_as_the_call_would() -> None:
    with pytest.raises(TypeError):
        key()
    with pytest.raises(TypeError):
        key(1, a=1)


def test_functions_without_a_signature_still_get_keys() -> None:
    make = KeyMaker(max)  # builtins may have no signature
    assert make((1, 2), {}) == make((1, 2), {})
    assert make((1, 2), {}) != make((2, 1), {})
    assert qualified_name(max) == "builtins.max"


def test_custom_key_builder_is_namespaced() -> None:
    build = custom_key("users", lambda user_id, **_: f"user:{user_id}")
    assert build((7,), {"verbose": True}) == b"users:user:7"
    assert custom_key(None, lambda x: x)((b"raw",), {}) == b"raw"
    with pytest.raises(TypeError, match="key_builder must return str or bytes"):
        custom_key(None, lambda x: x)((7,), {})
