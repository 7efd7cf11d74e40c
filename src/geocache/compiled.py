"""Which modules mypyc compiles, and whether this process runs them compiled.

The hot path (the RESP codec, the store, the commands, the RESP connection loop,
placement and the peer codec) is compiled to C extension modules by mypyc from the same
typed source (setup.py reads `MODULES` from here); the `.py` files stay beside the `.so`
files and run as plain Python wherever the build could not compile (no C compiler) or
`GEOCACHE_PURE=1` asks for it (geocache/__init__.py then imports the sources).

Package `__init__` modules are never compiled: they only re-export, and keeping them
Python lets the pure-mode import hook find every module by its `.py` file.

No I/O beyond finding and reading `__file__` of modules already imported (or importing them).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from importlib.util import spec_from_file_location
from types import ModuleType

# The environment variable that forces pure Python: at build time setup.py compiles
# nothing, at run time geocache/__init__.py imports the `.py` sources even beside `.so`s.
PURE_ENV = "GEOCACHE_PURE"

# Paths under src/geocache/: a directory means every module in it but its __init__.
MODULES: tuple[str, ...] = (
    "protocol/",
    "store/",
    "commands/",
    "server/resp.py",
    "slots.py",
    # Every write takes a version from the HLC (and a lookup of a key with a TTL reads
    # the wall clock): interpreted, a version cost about 240 ns of a 800 ns Store.set.
    "clock.py",
    "cluster/placement.py",
    "cluster/digest.py",
    # JournaledStore subclasses Store: an interpreted class cannot subclass a compiled one.
    "cluster/journal.py",
    "cluster/records.py",
    "cluster/swim_messages.py",
)
# Left out, each for a reason:
# - protocol/types.py: its reply types subclass str, bytes and int, which mypyc compiles
#   only as non-native classes (a runtime dependency on mypy_extensions for no speed:
#   the classes would stay Python classes either way).
# - store/local.py: LocalCache's public methods check what a user passes and say what is
#   accepted (`cache keys are str or bytes, not int`, True refused where an int is due);
#   compiled, mypyc's own entry checks would answer first, with other words, and take
#   True for 1. The Store it wraps is compiled, and so are its get and set of bytes
#   (store/bytespath.py, whose parameters are `object`: it checks nothing itself).
EXCLUDED: tuple[str, ...] = ("protocol/types.py", "store/local.py")


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """True when `GEOCACHE_PURE` is set to anything but empty or 0."""
    return environ.get(PURE_ENV, "") not in ("", "0")


def module_names(package_dir: str) -> list[str]:
    """The dotted names of the compiled modules, found under `package_dir` (src/geocache)."""
    names: list[str] = []
    for path in MODULES:
        if path.endswith("/"):
            files = sorted(
                f"{path}{name}"
                for name in os.listdir(os.path.join(package_dir, path))
                if name.endswith(".py") and name != "__init__.py"
            )
            files = [f for f in files if f not in EXCLUDED]
        else:
            files = [path]
        names.extend("geocache." + f.removesuffix(".py").replace("/", ".") for f in files)
    return names


def is_extension(module_name: str) -> bool:
    """Whether `module_name` (imported here if it is not yet) runs as an extension module."""
    file = getattr(importlib.import_module(module_name), "__file__", None) or ""
    return any(file.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


@cache
def compiled() -> bool:
    """True when every module of `MODULES` runs compiled in this process (asked once)."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    return all(is_extension(name) for name in module_names(package_dir))


class SourceFinder(MetaPathFinder):
    """Finds geocache's modules by their `.py` file, ahead of any `.so` beside it.

    The standard path finder tries extension suffixes before `.py`; this finder, first
    on `sys.meta_path`, answers for every `geocache.*` module that has a `.py` file and
    leaves packages and everything else to the finders after it.
    """

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not fullname.startswith("geocache."):
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return spec_from_file_location(fullname, source)
        return None


def use_sources() -> None:
    """Import geocache's `.py` sources from now on (`GEOCACHE_PURE=1`), once."""
    if not any(isinstance(finder, SourceFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, SourceFinder())
