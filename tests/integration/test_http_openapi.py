"""schemathesis against /openapi.json of a real node: no 5xx, every response as documented.

The CLI (`st run`) runs in a subprocess with every check on (server errors, status
codes, content types, headers, response schemas, negative data rejected, valid data
accepted, use after delete, auth ignored) over its coverage, fuzzing and stateful
phases. Examples are bounded and the seed fixed, so a run takes seconds and a failure
reproduces; `GEOCACHE_SCHEMATHESIS_SEED` picks another seed to explore further.

Two nodes: one open, one with requirepass, which schemathesis calls with the bearer
token and also without it (the `ignored_auth` check). Both keep the default key and
value limits: a key's limit is in bytes, which a JSON schema cannot state for a string,
so a small limit would make schemathesis's "valid" keys fail; test_http.py covers the
413 and 414 answers instead. The node's log must show no traceback afterwards: bad
requests (schemathesis also probes with a NUL byte in a header) are the client's fault.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from integration.test_http import start_http_node

pytestmark = pytest.mark.geocache_only

MAX_EXAMPLES = 60  # per operation and phase: about 5 s per run on the 2-core CI machine
SEED = int(os.environ.get("GEOCACHE_SCHEMATHESIS_SEED", "20240607"))
RUN_TIMEOUT_S = 100.0
TOKEN = "openapi-s3cret"
ST = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"
# A conditional PUT or DELETE (If-Match, If-None-Match) whose version does not hold is a
# valid request answered 412 as documented: schemathesis's defaults plus 412. A DELETE
# with made-up preconditions of made-up keys is answered 404 or 412 almost always, which
# its "validation mismatch" heuristic would take for a schema looser than the API (so
# that warning is left out; the others stay on).
CONFIG = """warnings = ["missing_auth", "missing_test_data", "base_url_mismatch",
            "unused_openapi_auth", "missing_deserializer", "unsupported_regex",
            "method_not_allowed", "low_valid_rate"]

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "412", "429", "5xx"]
"""


def schemathesis(workdir: Path, http_port: int, *args: str) -> None:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    argv = [
        *(sys.executable, "-c", ST, "--config-file", str(config)),
        *("run", f"http://127.0.0.1:{http_port}/openapi.json"),
        *("--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED)),
        *("--workers", "1", "--request-timeout", "10", "--no-color"),
        *("--generation-database", "none"),
        *args,
    ]
    done = subprocess.run(
        argv, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-12_000:]
    assert "No issues found" in output, output[-4_000:]


def test_open_node_conforms_to_its_openapi(tmp_path: Path) -> None:
    node = start_http_node(tmp_path)
    try:
        schemathesis(tmp_path, node.http_port)
    finally:
        node.server.stop()
    assert "Traceback" not in node.server.log_text()


def test_node_with_a_password_conforms_to_its_openapi(tmp_path: Path) -> None:
    node = start_http_node(tmp_path, "--requirepass", TOKEN)
    try:
        schemathesis(tmp_path, node.http_port, "--header", f"Authorization: Bearer {TOKEN}")
    finally:
        node.server.stop()
    assert "Traceback" not in node.server.log_text()
