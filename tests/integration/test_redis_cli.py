"""redis-cli (the real binary, in a subprocess) against a real node process.

redis-cli prints raw replies when its stdout is not a terminal (as here); `--no-raw`
asks for the interactive formatting (`(nil)`, `(integer) 1`, quoted strings).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from support import NodeFactory, RawClient, ServerProcess, encode_command

# One redis-cli run normally takes milliseconds; mass insertion well under a second.
CLI_TIMEOUT_S = 60.0
PIPE_KEYS = 10_000


def run_cli(
    redis_cli: str,
    server: ServerProcess,
    *args: str,
    stdin: bytes | None = None,
    timeout_s: float = CLI_TIMEOUT_S,
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [redis_cli, "-h", server.host, "-p", str(server.port), *args],
        input=stdin,
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result
    return result


def out(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stdout.decode()


@pytest.fixture
def server(node: ServerProcess) -> Iterator[ServerProcess]:
    with RawClient(node.host, node.port) as raw:
        assert raw.call("FLUSHALL") == b"+OK\r\n"
    yield node


def test_ping_set_get(redis_cli: str, server: ServerProcess) -> None:
    assert out(run_cli(redis_cli, server, "PING")) == "PONG\n"
    assert out(run_cli(redis_cli, server, "PING", "hello")) == "hello\n"
    assert out(run_cli(redis_cli, server, "SET", "k", "v")) == "OK\n"
    assert out(run_cli(redis_cli, server, "GET", "k")) == "v\n"
    assert out(run_cli(redis_cli, server, "GET", "missing")) == "\n"
    assert out(run_cli(redis_cli, server, "INCR", "n")) == "1\n"


def test_no_raw_formatting(redis_cli: str, server: ServerProcess) -> None:
    assert out(run_cli(redis_cli, server, "--no-raw", "SET", "k", "a b")) == "OK\n"
    assert out(run_cli(redis_cli, server, "--no-raw", "GET", "k")) == '"a b"\n'
    assert out(run_cli(redis_cli, server, "--no-raw", "GET", "missing")) == "(nil)\n"
    assert out(run_cli(redis_cli, server, "--no-raw", "INCR", "n")) == "(integer) 1\n"
    assert out(run_cli(redis_cli, server, "--no-raw", "MGET", "k", "missing")) == (
        '1) "a b"\n2) (nil)\n'
    )
    assert out(run_cli(redis_cli, server, "--no-raw", "GET")) == (
        "(error) ERR wrong number of arguments for 'get' command\n"
    )


def test_raw_binary_value(redis_cli: str, server: ServerProcess) -> None:
    value = b"line1\nline2\ttab \x01"
    run_cli(redis_cli, server, "-x", "SET", "bin", stdin=value)
    assert run_cli(redis_cli, server, "--raw", "GET", "bin").stdout == value + b"\n"
    assert out(run_cli(redis_cli, server, "--no-raw", "GET", "bin")) == (
        '"line1\\nline2\\ttab \\x01"\n'
    )
    assert out(run_cli(redis_cli, server, "STRLEN", "bin")) == f"{len(value)}\n"


def test_commands_from_stdin(redis_cli: str, server: ServerProcess) -> None:
    script = b"SET a 1\nINCR a\nGET a\nGET missing\nNOSUCH x\nDBSIZE\n"
    result = run_cli(redis_cli, server, stdin=script)
    assert out(result).splitlines() == [
        "OK",
        "2",
        "2",
        "",
        "ERR unknown command 'NOSUCH', with args beginning with: 'x' ",
        "",  # redis-cli follows an error with an empty line in raw mode
        "1",
    ]


def test_repeat(redis_cli: str, server: ServerProcess) -> None:
    assert out(run_cli(redis_cli, server, "-r", "3", "INCR", "c")).split() == ["1", "2", "3"]


def test_info(redis_cli: str, server: ServerProcess) -> None:
    text = out(run_cli(redis_cli, server, "INFO"))
    assert "# Server\r\n" in text
    assert "\r\nredis_version:" in text
    assert "# Keyspace\r\n" in text
    server_only = out(run_cli(redis_cli, server, "INFO", "server"))
    assert server_only.startswith("# Server\r\n")
    assert "# Keyspace" not in server_only


def test_resp3(redis_cli: str, server: ServerProcess) -> None:
    run_cli(redis_cli, server, "SET", "k", "v")
    assert out(run_cli(redis_cli, server, "-3", "--no-raw", "GET", "missing")) == "(nil)\n"
    assert out(run_cli(redis_cli, server, "-3", "--no-raw", "GET", "k")) == '"v"\n'
    assert out(
        run_cli(redis_cli, server, "-3", "--no-raw", "CONFIG", "GET", "maxmemory")
    ).startswith('1# "maxmemory" => "')
    hello = out(run_cli(redis_cli, server, "-3", "--no-raw", "HELLO", "3"))
    assert '# "proto" => (integer) 3\n' in hello
    assert out(run_cli(redis_cli, server, "-3", "INCRBYFLOAT", "f", "3.0e3")) == "3000\n"


def test_scan(redis_cli: str, server: ServerProcess) -> None:
    run_cli(
        redis_cli,
        server,
        "MSET",
        *[f"user:{i}" if j == 0 else str(i) for i in range(200) for j in (0, 1)],
    )
    run_cli(redis_cli, server, "MSET", "other:1", "x", "other:2", "y")
    everything = out(run_cli(redis_cli, server, "--scan")).split()
    assert sorted(everything) == sorted([f"user:{i}" for i in range(200)] + ["other:1", "other:2"])
    users = out(run_cli(redis_cli, server, "--scan", "--pattern", "user:1?")).split()
    assert sorted(users) == sorted(f"user:{i}" for i in range(10, 20))


def test_bigkeys(redis_cli: str, server: ServerProcess) -> None:
    """--bigkeys drives DBSIZE, SCAN, TYPE and STRLEN."""
    run_cli(redis_cli, server, "MSET", "small", "x", "large", "y" * 1000)
    report = out(run_cli(redis_cli, server, "--bigkeys"))
    assert "Biggest string found '\"large\"' has 1000 bytes" in report
    assert "2 strings with 1001 bytes" in report


def test_pipe_mass_insertion(redis_cli: str, server: ServerProcess) -> None:
    payload = b"".join(encode_command(["SET", f"mass:{i}", f"value-{i}"]) for i in range(PIPE_KEYS))
    result = run_cli(redis_cli, server, "--pipe", stdin=payload)
    assert f"errors: 0, replies: {PIPE_KEYS}" in out(result)
    assert out(run_cli(redis_cli, server, "DBSIZE")) == f"{PIPE_KEYS}\n"
    assert out(run_cli(redis_cli, server, "GET", f"mass:{PIPE_KEYS - 1}")) == (
        f"value-{PIPE_KEYS - 1}\n"
    )


def test_password(redis_cli: str, node_factory: NodeFactory) -> None:
    server = node_factory(requirepass="s3cret")
    assert out(run_cli(redis_cli, server, "PING")) == "NOAUTH Authentication required.\n\n"
    authed = ("-a", "s3cret", "--no-auth-warning")
    assert out(run_cli(redis_cli, server, *authed, "PING")) == "PONG\n"
    assert out(run_cli(redis_cli, server, *authed, "-3", "SET", "k", "v")) == "OK\n"
    assert (
        out(
            run_cli(
                redis_cli,
                server,
                "--user",
                "default",
                "--pass",
                "s3cret",
                "--no-auth-warning",
                "GET",
                "k",
            )
        )
        == "v\n"
    )
    wrong = run_cli(redis_cli, server, "-a", "wrong", "--no-auth-warning", "PING")
    assert "WRONGPASS" in (wrong.stdout + wrong.stderr).decode()


def test_memkeys_reports_each_key_size(redis_cli: str, server: ServerProcess) -> None:
    for i, size in enumerate((100, 1000, 10)):
        run_cli(redis_cli, server, "SET", f"mem:{i}", "x" * size)
    text = out(run_cli(redis_cli, server, "--memkeys"))
    assert "Sampled 3 keys in the keyspace!" in text
    biggest = run_cli(redis_cli, server, "MEMORY", "USAGE", "mem:1")
    assert f"Biggest string found '\"mem:1\"' has {out(biggest).strip()} bytes" in text


def test_hotkeys_says_why_as_redis_does_under_lru(
    redis_cli: str, server: ServerProcess, target_name: str
) -> None:
    """Eviction is LRU, so OBJECT FREQ errs as it does in Redis without an LFU policy,
    and redis-cli --hotkeys stops with that error (against Redis the same)."""
    run_cli(redis_cli, server, "SET", "hot", "v")
    if target_name == "redis":
        run_cli(redis_cli, server, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    result = subprocess.run(
        [redis_cli, "-h", server.host, "-p", str(server.port), "--hotkeys"],
        capture_output=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 1
    assert b"ERR An LFU maxmemory policy is not selected" in result.stdout + result.stderr
