"""Log lines: nested values as nested JSON (JSON lines) or compact JSON (text lines)."""

from __future__ import annotations

import enum
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from geocache.observability import logs


@dataclass(frozen=True, slots=True)
class Point:
    x: int
    tags: tuple[str, ...]


class Color(enum.Enum):
    RED = "red"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    root = logging.getLogger("geocache")
    saved = root.handlers[:], root.level, root.propagate
    stream = io.StringIO()
    yield logging.getLogger("geocache.test"), stream
    root.handlers[:], root.level, root.propagate = saved[0], saved[1], saved[2]


def use(stream: io.StringIO, as_json: bool) -> None:
    logs.setup("n1", "eu", "debug", as_json)
    handler = logging.getLogger("geocache").handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


EXTRA = {
    "stats": {"rounds": 3, "pulled": {"keys": 2}},
    "peers": ["a", "b"],
    "point": Point(1, ("x", "y")),
    "key": b"user:\xff1",
    "color": Color.RED,
    "ids": {"b", "a"},
    "error": ValueError("bad"),
}


def test_json_lines_nest_values(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    use(stream, as_json=True)
    log.info("warm-up done", extra={"why": "warmed", **EXTRA})
    line = json.loads(stream.getvalue())
    assert line["event"] == "warm-up done" and line["node"] == "n1" and line["region"] == "eu"
    assert line["stats"] == {"rounds": 3, "pulled": {"keys": 2}}
    assert line["peers"] == ["a", "b"]
    assert line["point"] == {"x": 1, "tags": ["x", "y"]}
    assert line["key"] == "user:\\xff1"
    assert line["color"] == "red"
    assert line["ids"] == ["a", "b"]
    assert line["error"] == "bad"


def test_text_lines_show_nested_values_as_compact_json(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    use(stream, as_json=False)
    log.info("warm-up done", extra={"why": "warmed", **EXTRA})
    line = stream.getvalue()
    assert ' stats={"rounds":3,"pulled":{"keys":2}} ' in line
    assert ' point={"x":1,"tags":["x","y"]} ' in line
    assert " key=user:\\xff1 " in line and " why=warmed " in line
    assert "{'" not in line and "b'" not in line  # no Python reprs


def test_an_exception_is_one_json_string(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    use(stream, as_json=True)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    line = json.loads(stream.getvalue())
    assert "RuntimeError: boom" in line["error"]
