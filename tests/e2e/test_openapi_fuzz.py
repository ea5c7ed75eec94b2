"""Schemathesis against a real `sidecar serve`, through `/openapi.json`, with a bearer key.

Every phase (examples, coverage, fuzzing, stateful) and every check that holds the API
to its own document: no server error, every status and content type documented, answers
that match their schemas, data outside the schema refused (no lax coercion: a `0` is not
a boolean), auth not ignored, deleted resources gone. `make test` runs a short seeded
form; `make soak` a long random one (`SIDECAR_FUZZ_SECONDS`).

`positive_data_acceptance` is left out on purpose: some rules cannot be said in a schema
(a key already taken, code that does not compile, a model with no provider configured),
so a request of the right shape may still be refused, with a 4xx naming the problem.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.secrets import assert_no_secret
from tests.support.sidecar_process import run_sidecar

API_KEY = "fuzz-api-key-2c9d41"
CONFIG = Path(__file__).with_name("schemathesis.toml")
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
)


def _budget() -> list[str]:
    seconds = os.environ.get("SIDECAR_FUZZ_SECONDS")
    if seconds:  # the long form: random, for as long as it is given
        return ["--max-time", seconds]
    return ["--seed", "20261202", "--max-examples", "25"]


def _only_generator_errors(report: str) -> bool:
    """Whether every error schemathesis reports is its own generator's ("Inconsistent
    results" while making coverage cases, seen now and then), not the service's."""
    errors = report.partition("=== ERRORS ===")[2].partition("=== WARNINGS ===")[0]
    blocks = [block for block in errors.split("Runtime Error")[1:] if block.strip()]
    return bool(blocks) and all(
        "Inconsistent results" in block and "schemathesis/specs/openapi/coverage" in block
        for block in blocks
    )


def test_the_api_holds_to_its_openapi_document(tmp_path: Path) -> None:
    env = {"SIDECAR_API_KEYS": API_KEY, "SIDECAR_LOG_LEVEL": "warning"}
    with run_sidecar(tmp_path, env) as running:
        st = Path(sys.executable).with_name("st")
        command = [
            str(st),
            "--config-file",
            str(CONFIG),
            "run",
            f"{running.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {API_KEY}",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--workers",
            "2",
            "--no-color",
            *_budget(),
        ]
        finished = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=1800, check=False
        )
        still_up = httpx.get(f"{running.base_url}/healthz", timeout=5).status_code
        logs = running.logs()
    report = finished.stdout + finished.stderr
    assert "Test cases:" in report, report[-20_000:]
    assert "Failures:" not in report, report[-20_000:]
    if finished.returncode != 0:
        assert _only_generator_errors(report), report[-20_000:]
    assert still_up == 200
    assert "Traceback" not in logs, logs[-5_000:]
    for text in (report, logs):
        assert_no_secret(text, API_KEY)
