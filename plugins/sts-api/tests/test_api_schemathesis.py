"""Property-based tests of the served OpenAPI document: schemathesis generates requests from
it (valid ones, and ones the document forbids) and checks every response: no 5xx, every status
and body as documented, forbidden input refused, auth enforced.

It runs schemathesis' command line against a live server on a free loopback port, bounded by
examples per operation with a fixed seed (so CI repeats the same cases; change ``SEED`` to
explore others). The figures are printed, e.g. ``schemathesis: 16 operations, 5627 test cases,
0 failures, 0 errors in 40.7s (seed 20261127)``; ``/openapi.json`` itself is the one operation
schemathesis leaves out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sts_api_helpers import ADMIN, running_api

SEED = 20261127
MAX_EXAMPLES = 300
#: Every check but positive_data_acceptance: a body the schema allows may still be refused by
#: the task validation (an unknown function, a bad cron expression), which the schema cannot say.
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
          "allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth")


def schemathesis_command() -> list[str]:
    found = shutil.which("st", path=str(Path(sys.executable).parent))
    assert found, "schemathesis is not installed: pip install -e 'plugins/sts-api[test]'"
    return [found]


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report.json"
    with running_api(allowed_functions=["sts_api.demo:*", "sts_api_jobs:*"]) as api:
        result = subprocess.run(
            [*schemathesis_command(), "run", f"{api.client.url}/openapi.json",
             "--header", f"Authorization: Bearer {ADMIN}", "--checks", CHECKS,
             "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
             "--generation-database", "none", "--request-timeout", "10", "--no-color",
             "--report", "json", "--report-json-path", str(report)],
            cwd=tmp_path, capture_output=True, text=True, timeout=280, check=False,
        )
    assert report.exists(), result.stdout + result.stderr
    figures = json.loads(report.read_text())
    summary = (f"schemathesis: {figures['operations']['tested']} operations, {figures['test_cases']['generated']} "
               f"test cases, {figures['test_cases']['unique_failures']} failures, {len(figures['errors'])} errors "
               f"in {figures['running_time']:.1f}s (seed {SEED})")
    with capsys.disabled():
        print(f"\n{summary}")
    assert result.returncode == 0, result.stdout[-6000:]
    assert figures["failures"] == [] and figures["errors"] == [], summary
    assert figures["operations"]["tested"] == 16 and figures["test_cases"]["generated"] > 1000, summary
