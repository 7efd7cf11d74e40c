"""Build geocache's image on a machine that reaches no container registry.

The base image is made here: `debootstrap --variant=minbase` of the host's own Debian
release from the host's own apt mirror, plus python3 and python3-venv, imported with
`podman import`. It is cached under CACHE_DIR (outside the repository), keyed by the
release, the mirror and the package list, both as a tarball and as a podman image, so
only the first run pays for debootstrap. geocache's dependencies are downloaded as
wheels for the base image's Python into a wheelhouse (cached by pyproject.toml's hash),
copied into a build context with the sources, and the image is built with
`--network none`: the build itself reaches nothing.

Podman runs as root with runc and cgroupfs (crun fails on hybrid cgroups) and open-file
limits at the host's own hard limit (podman's default is above it here).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import resource
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from support.procs import REPO_ROOT

CACHE_DIR = Path(os.environ.get("GEOCACHE_TEST_CACHE", Path.home() / ".cache" / "geocache-tests"))
BASE_PACKAGES = ("python3", "python3-venv")
BASE_REPO = "localhost/geocache-test-base"
# debootstrap downloads and unpacks about 100 packages: minutes on a cold cache.
DEBOOTSTRAP_TIMEOUT_S = 900
# The image build installs wheels in two stages; on 2 shared cores about a minute.
BUILD_TIMEOUT_S = 600
COMMAND_TIMEOUT_S = 120
# Processes (threads included) of the container's user: a node runs a few dozen threads.
NPROC_LIMIT = 4096


def podman_argv(*args: str) -> list[str]:
    return ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", *args]


def ulimit_args() -> list[str]:
    """Open files at the host's hard limit (podman's default exceeds it here), processes
    at NPROC_LIMIT: runc is refused a limit at the host's own hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    nproc = NPROC_LIMIT if nproc_hard == resource.RLIM_INFINITY else min(nproc_hard, NPROC_LIMIT)
    return ["--ulimit", f"nofile={hard}:{hard}", "--ulimit", f"nproc={nproc}:{nproc}"]


def podman(*args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    done = subprocess.run(
        podman_argv(*args), capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Release:
    suite: str
    mirror: str

    @property
    def key(self) -> str:
        text = f"{self.suite} {self.mirror} {' '.join(BASE_PACKAGES)} {platform.machine()}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def host_release() -> Release:
    """The host's Debian codename and the first apt source that serves it (its suite
    named exactly: third-party sources name their own suites)."""
    os_release = Path("/etc/os-release").read_text()
    match = re.search(r"^VERSION_CODENAME=(\w+)", os_release, re.M)
    assert match, "the container test needs a Debian host (/etc/os-release)"
    suite = match.group(1)
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if path.is_file() and path.suffix in (".list", ".sources"):
            for uri, suites in _apt_sources(path.read_text()):
                if suite in suites:
                    return Release(suite, uri)
    raise AssertionError(f"no apt source for {suite} in /etc/apt/sources.list*")


def _apt_sources(text: str) -> list[tuple[str, list[str]]]:
    """(URI, suites) of one-line (`deb URI suite ...`) and deb822 (`URIs:`) sources."""
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
        if "deb" in fields.get("Types", "").split() and "URIs" in fields:
            found.append((fields["URIs"].split()[0], fields.get("Suites", "").split()))
    return found


def base_image() -> str:
    """The cached base image's name, made (debootstrap) or imported (tarball) if needed."""
    release = host_release()
    name = f"{BASE_REPO}:{release.key}"
    if subprocess.run(podman_argv("image", "exists", name), check=False).returncode == 0:
        return name
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"base-{release.key}.tar"
    if not tarball.exists():
        _debootstrap(release, tarball)
    podman("import", str(tarball), name, timeout_s=300)
    return name


def _debootstrap(release: Release, tarball: Path) -> None:
    rootfs = CACHE_DIR / f"rootfs-{release.key}-{os.getpid()}"
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                release.suite,
                str(rootfs),
                release.mirror,
            ],
            check=True,
            capture_output=True,
            timeout=DEBOOTSTRAP_TIMEOUT_S,
        )
        # No apt lists or caches in the image; it never runs apt.
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        partial = tarball.with_suffix(".part")
        with tarfile.open(partial, "w") as tar:
            tar.add(rootfs, arcname=".")
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)


def wheelhouse(base: str) -> Path:
    """geocache's dependencies (server extra) and its build backend, as wheels for the
    base image's Python and this machine's architecture."""
    version = podman(
        "run",
        "--rm",
        *ulimit_args(),
        base,
        "python3",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    ).strip()
    pyproject = (REPO_ROOT / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject + version.encode()).hexdigest()[:12]
    target = CACHE_DIR / f"wheels-{key}"
    if target.exists():
        return target
    requirements = _server_requirements()
    partial = CACHE_DIR / f"wheels-{key}-{os.getpid()}.part"
    machine = platform.machine()
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_28_{machine}", f"linux_{machine}"]
    subprocess.run(
        [
            "python3" if shutil.which("python3") else "python",
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(partial),
            "--only-binary=:all:",
            "--python-version",
            version,
            "--implementation",
            "cp",
            *[arg for p in platforms for arg in ("--platform", p)],
            *requirements,
            *_build_requirements(),
        ],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
    )
    partial.rename(target)
    return target


def _server_requirements() -> list[str]:
    """The project's dependencies and its server extra, from pyproject.toml."""
    import tomllib

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["server"]]


def _build_requirements() -> list[str]:
    """The build backend and what setup.py needs (mypyc), from pyproject.toml."""
    import tomllib

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return list(pyproject["build-system"]["requires"])


def build_context(into: Path, wheels: Path) -> Path:
    """What the Dockerfile copies: sources, metadata, the wheelhouse, the health check (no
    .so files a development build left in src/: the image's Python builds its own)."""
    for name in ("Dockerfile", "pyproject.toml", "setup.py", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(REPO_ROOT / name, into / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(REPO_ROOT / "src", into / "src", ignore=ignored)
    shutil.copytree(wheels, into / "deploy" / "wheelhouse")
    shutil.copy2(REPO_ROOT / "deploy" / "healthcheck.py", into / "deploy" / "healthcheck.py")
    return into


def build_image(context: Path, base: str, tag: str) -> float:
    """Build offline; returns the seconds it took."""
    started = time.monotonic()
    podman(
        "build",
        "--format",
        "docker",  # the OCI format has no HEALTHCHECK
        "--network",
        "none",
        "--layers=false",  # no build-stage image left behind
        *ulimit_args(),
        "--build-arg",
        f"BASE={base}",
        # The same base builds the wheel: it has no C compiler, so the wheel is pure
        # Python (setup.py says so in the build log); the official build base compiles.
        "--build-arg",
        f"BUILD_BASE={base}",
        "--build-arg",
        "PIP_NO_INDEX=1",
        "--tag",
        tag,
        str(context),
        timeout_s=BUILD_TIMEOUT_S,
    )
    return time.monotonic() - started
