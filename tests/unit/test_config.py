"""Settings from a TOML file, the environment and flags: values and the errors for bad ones.

Every error names the setting and where its value came from (the file, the variable
or the flag), and nothing wrong passes silently: a misspelled variable, a fraction for
an integer, a word that is not a boolean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from geocache.config import coerce, load


def toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = toml(tmp_path, 'port = 7000\nmax-bytes = "2mb"\nregion = "eu"\nseeds = ["a:1", "b:2"]\n'
                          'cluster_secret = "s"\n')  # fmt: skip
    config = load(path, environ={"GEOCACHE_PORT": "7001"}, overrides={"region": "us"})
    assert (config.port, config.max_bytes, config.region) == (7001, 2 << 20, "us")
    assert config.seed_list == ["a:1", "b:2"]


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "port = \n")
    with pytest.raises(ValueError, match=r"node\.toml: TOML syntax error") as info:
        load(path, environ={})
    assert path in str(info.value)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('port = "abc"', "node.toml: port: not an integer: 'abc'"),
        ("replicas = 2.5", "node.toml: replicas: not an integer: 2.5"),
        ("max_keys = true", "node.toml: max_keys: not an integer: True"),
        ("max_bytes = 1.5", "node.toml: max_bytes: not a size: 1.5"),
        ('max_bytes = "lots"', "node.toml: max_bytes: not a size: 'lots'"),
        ('log_json = "maybe"', "node.toml: log_json: not true or false: 'maybe'"),
        ("region = 5", "node.toml: region: not a string: 5"),
        ('origin_ttl_s = "soon"', "node.toml: origin_ttl_s: not a number: 'soon'"),
        ("prot = 1", "node.toml: unknown setting 'prot' (did you mean 'port'?)"),
        ("replicas = 0", "node.toml: replicas must be at least 1"),
    ],
)
def test_a_bad_value_in_the_file_names_the_setting_and_the_file(
    tmp_path: Path, line: str, expected: str
) -> None:
    with pytest.raises(ValueError) as info:
        load(toml(tmp_path, line + "\n"), environ={})
    assert f"{tmp_path}/{expected}" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        ("GEOCACHE_PORT", "7o00", "GEOCACHE_PORT: port: not an integer: '7o00'"),
        ("GEOCACHE_REPLICAS", "2.0", "GEOCACHE_REPLICAS: replicas: not an integer: '2.0'"),
        (
            "GEOCACHE_MAXBYTES",
            "1mb",
            "unknown environment variable GEOCACHE_MAXBYTES (did you mean GEOCACHE_MAX_BYTES?)",
        ),
        ("GEOCACHE_NOTHING_LIKE_IT", "1", "unknown environment variable GEOCACHE_NOTHING_LIKE_IT"),
        ("GEOCACHE_REPLICAS", "0", "GEOCACHE_REPLICAS: replicas must be at least 1"),
    ],
)
def test_the_environment_is_checked(variable: str, text: str, expected: str) -> None:
    with pytest.raises(ValueError) as info:
        load(environ={variable: text})
    assert str(info.value) == expected


def test_other_variables_are_left_alone() -> None:
    environ = {"GEOCACHE_COMMAND_LATENCY": "off", "GEOCACHE_TEST_TARGET": "redis", "HOME": "/"}
    assert load(environ=environ).port == 7379


def test_flags_are_named_as_flags() -> None:
    with pytest.raises(ValueError, match=r"^--port: not an integer: 'abc'$"):
        load(environ={}, overrides={"port": "abc"})
    with pytest.raises(ValueError, match=r"^--max-keys: max_keys must be 0 or more$"):
        load(environ={}, overrides={"max_keys": "-1"})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("port", " 42 ", 42),
        ("port", "+42", 42),
        ("max_bytes", "64mb", 64 << 20),
        ("max_bytes", 100, 100),
        ("log_json", "on", True),
        ("log_json", "0", False),
        ("log_json", False, False),
        ("origin_ttl_s", "2.5", 2.5),
        ("origin_ttl_s", 3, 3.0),
    ],
)
def test_values_that_are_accepted(name: str, value: object, expected: object) -> None:
    assert coerce(name, value) == expected


def test_coerce_names_the_setting() -> None:
    with pytest.raises(ValueError, match=r"^replicas: not an integer: 2\.5$"):
        coerce("replicas", 2.5)
