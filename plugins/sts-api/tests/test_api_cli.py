"""``sts run --api`` and ``sts api`` from the command line, and the README's curl example."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sts_api_helpers import ADMIN, ApiClient, read_address, wait_for

from sts_core.testing import run_cli

PLUGIN_DIR = Path(__file__).resolve().parents[1]
README = PLUGIN_DIR / "README.md"
EXAMPLE_CONFIG = PLUGIN_DIR / "examples" / "api.yaml"


def readme_curl() -> str:
    """The README's complete ``curl -X POST ... /tasks`` command."""
    match = re.search(r"^(curl -X POST .*?http://127\.0\.0\.1:8080/tasks)$", README.read_text(),
                      re.MULTILINE | re.DOTALL)
    assert match, "the README has no curl -X POST ... /tasks example"
    return match.group(1).replace("\\\n", " ")


def test_sts_api_with_the_memory_backend_points_at_sts_run_api(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_API_TOKEN", ADMIN)
    assert run_cli(["api"]) == 2
    err = capsys.readouterr().err
    assert "`sts api` serves tasks kept in a backend shared between processes, such as redis" in err
    assert "use `sts run --api`" in err


def test_sts_run_api_without_the_plugin_says_so(capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_DISABLE_PLUGINS", "api")
    assert run_cli(["run", "--api", "--for", "1s"]) == 2
    assert "--api needs the api plugin, which is not installed or is disabled" in capsys.readouterr().err


def test_sts_run_api_without_a_token_is_a_config_error(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STS_API_TOKEN", raising=False)
    assert run_cli(["run", "--api", "--for", "1s"]) == 2
    assert "api.admin_token: required when api.enabled is true" in capsys.readouterr().err


def test_the_readme_curl_example_creates_a_task_that_fires(tmp_path: Path) -> None:
    environment = {**os.environ, "STS_API_TOKEN": ADMIN, "STS_API__ADDRESS": "127.0.0.1:0"}
    process = subprocess.Popen(
        [sys.executable, "-m", "sts_cli", "run", "--api", "--config", str(EXAMPLE_CONFIG), "--for", "60s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=tmp_path,
    )
    try:
        url = read_address(process)
        command = readme_curl().replace("http://127.0.0.1:8080", url)
        if shutil.which("curl"):
            done = subprocess.run(["bash", "-c", command + " --silent --show-error"], env=environment,
                                  capture_output=True, text=True, timeout=10, check=True)
            created = json.loads(done.stdout)
        else:  # the same request without curl
            body = json.loads(shlex.split(command)[shlex.split(command).index("-d") + 1])
            created = ApiClient(url).post("/tasks", body).json
        name = created["task"]["name"]
        client = ApiClient(url)
        runs = wait_for(lambda: client.get(f"/runs?task={name}&state=succeeded").json["runs"], timeout=20)
        output = client.get(f"/runs/{runs[0]['id']}").json["output"]
        assert "from a task created through the STS REST API" in output
    finally:
        process.terminate()
        process.wait(timeout=15)
