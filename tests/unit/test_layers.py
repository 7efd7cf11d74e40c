"""The layers point one way: a module imports only its own layer and the layers below.

Every module under `src/geocache` is parsed with `ast`; every import counts, at the top,
under `TYPE_CHECKING` or inside a function (each is a dependency all the same). The
order, bottom to top, is `LAYERS` below; docs/architecture.md draws it. Inside a layer
imports are free. There is no list of exceptions: a new import that points up fails
here, and the fix is a seam (a `Protocol` the lower layer takes), not an entry.

The sans-IO layers (the store, the protocol codec and the pure command modules) must not
import `asyncio` or `socket` at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "geocache"

# Bottom to top. A module belongs to the layer of its longest matching prefix.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "leaves",
        (
            "geocache._version",
            "geocache.auth",
            "geocache.clock",
            "geocache.compiled",
            "geocache.config",
            "geocache.memoize",
            "geocache.origin.spec",
            "geocache.ports",
            "geocache.serializers",
            "geocache.singleflight",
            "geocache.slots",
            "geocache.tls",
        ),
    ),
    ("protocol", ("geocache.protocol",)),
    ("observability", ("geocache.observability", "geocache.fill")),
    ("store", ("geocache.store",)),
    ("commands", ("geocache.commands",)),
    ("cluster", ("geocache.cluster",)),
    ("client", ("geocache.client",)),
    ("origin", ("geocache.origin",)),
    ("server", ("geocache.server",)),
    # The public API (`geocache/__init__.py` re-exports the client and LocalCache), the
    # framework backends built on the client, the command line and the relay the demo uses.
    (
        "cli",
        ("geocache", "geocache.__main__", "geocache.cli", "geocache.contrib", "geocache.relay"),
    ),
]

# No I/O: these take bytes and give values (the server and the cluster do the I/O).
SANS_IO = (
    "geocache.store",
    "geocache.protocol",
    "geocache.commands",
)
IO_MODULES = {"asyncio", "socket", "selectors", "ssl"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS (and the diagram)")
    return best


def resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The modules an `ImportFrom` names: `from geocache import auth` is geocache.auth."""
    if node.level:
        base = module.split(".")
        is_package = (PACKAGE.parent / Path(*base) / "__init__.py").exists()
        base = base if is_package else base[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    found = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        as_path = SRC / Path(*candidate.split("."))
        if as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists():
            found.append(candidate)
        else:
            found.append(target)
    return found


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, wherever it sits."""
    module = module_name(path)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.extend((node.lineno, name) for name in resolve(module, node))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    assert MODULES
    for path in MODULES:
        layer_of(module_name(path))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_point_down(path: Path) -> None:
    module = module_name(path)
    mine = layer_of(module)
    upward = [
        f"line {line}: {target} ({LAYERS[layer_of(target)][0]})"
        for line, target in imports(path)
        if target.split(".")[0] == "geocache" and layer_of(target) > mine
    ]
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports up: " + "; ".join(upward)


@pytest.mark.parametrize(
    "path",
    [p for p in MODULES if module_name(p).startswith(SANS_IO)],
    ids=lambda p: module_name(p),
)
def test_sans_io_layers_do_no_io(path: Path) -> None:
    used = {target.split(".")[0] for _line, target in imports(path)} & IO_MODULES
    assert not used, f"{module_name(path)} imports {sorted(used)}"


def test_nothing_in_the_library_imports_test_machinery() -> None:
    for path in MODULES:
        for line, target in imports(path):
            top = target.split(".")[0]
            assert top not in {"sim", "support", "tests"}, f"{path.name}:{line} imports {target}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """A TYPE_CHECKING import and one inside a function count like any other."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from geocache.server.node import Node\n"
        "def f():\n"
        "    from geocache.cluster import digest\n"
        "    import geocache.origin.readthrough\n"
    )
    path = PACKAGE / "store" / "__layer_probe__.py"
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.extend(resolve(module_name(path), node))
    assert "geocache.server.node" in found
    assert "geocache.cluster.digest" in found
    assert "geocache.origin.readthrough" in found
    assert all(layer_of(t) > layer_of("geocache.store") for t in found if t != "typing")
