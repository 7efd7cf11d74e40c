"""Build geocache with its hot path compiled by mypyc, where a C compiler is at hand.

pyproject.toml holds the metadata; this file only adds the extension modules. The
modules to compile are listed in src/geocache/compiled.py (`MODULES`); mypyc compiles
them from the same typed source into one shared library (`geocache__mypyc`) and a small
shim extension per module, and the `.py` files ship beside them.

No compiling, loudly: with `GEOCACHE_PURE=1` set, or when a probe finds no working C
compiler (or no Python headers), the build warns on stderr and makes a pure-Python
package; `INFO server` then says `compiled:no`. A compiler that works but fails on
mypyc's output fails the build: that is a bug to see, not to paper over.
"""

from __future__ import annotations

import os
import runpy
import sys
import sysconfig
import tempfile
import time

from setuptools import setup
from setuptools.errors import CCompilerError, CompileError, PlatformError
from setuptools.extension import Extension

PACKAGE_DIR = os.path.join("src", "geocache")
_compiled = runpy.run_path(os.path.join(PACKAGE_DIR, "compiled.py"))


def warn(message: str) -> None:
    bar = "=" * 78
    print(f"\n{bar}\ngeocache: {message}\n{bar}\n", file=sys.stderr, flush=True)


def have_c_compiler() -> bool:
    """Whether a C compiler here builds against this Python's headers."""
    from setuptools._distutils import ccompiler
    from setuptools._distutils import sysconfig as du_sysconfig

    compiler = ccompiler.new_compiler()
    du_sysconfig.customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        probe = os.path.join(tmp, "probe.c")
        with open(probe, "w", encoding="ascii") as f:
            f.write("#include <Python.h>\nint probe(void) { return Py_IsInitialized(); }\n")
        try:
            compiler.compile(
                [probe], output_dir=tmp, include_dirs=[sysconfig.get_paths()["include"]]
            )
        except (CCompilerError, CompileError, PlatformError, OSError) as exc:
            warn(f"no usable C compiler ({exc}); building PURE PYTHON (compiled:no)")
            return False
    return True


def source_paths() -> list[str]:
    names = _compiled["module_names"](PACKAGE_DIR)
    return [os.path.join("src", *name.split(".")) + ".py" for name in names]


# What pip and build run first to learn the metadata, and the sdist: none compiles, and
# each would otherwise pay mypy's type check (several seconds) for nothing.
NO_BUILD_COMMANDS = {"egg_info", "dist_info", "sdist"}


def builds_extensions(argv: list[str]) -> bool:
    commands = [arg for arg in argv[1:] if not arg.startswith("-")]
    return not commands or commands[0] not in NO_BUILD_COMMANDS


def ext_modules() -> list[Extension]:
    if not builds_extensions(sys.argv):
        return []
    if _compiled["pure_requested"]():
        warn(f"{_compiled['PURE_ENV']} is set: building PURE PYTHON (compiled:no)")
        return []
    if not have_c_compiler():
        return []
    from mypyc.build import mypycify

    started = time.monotonic()
    # One shared library: calls between compiled modules stay native. mypy reads its
    # --strict configuration from pyproject.toml, as `mypy` does.
    extensions = mypycify(
        ["--follow-imports=silent", *source_paths()], group_name="geocache", opt_level="3"
    )
    print(f"geocache: mypyc generated C in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return extensions


setup(ext_modules=ext_modules())
