"""``rediss://`` URLs: STS talks TLS to a redis-server that only listens on a TLS port, and a certificate
it cannot verify is a clear error at start."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from sts.config import Config
from sts.plugin import BackendUnavailableError
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task
from sts_redis.testing import find_redis_server

calls: list[str] = []


def hello() -> None:
    calls.append("hello")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(directory: Path) -> None:
    """A throwaway CA and a server certificate for 127.0.0.1, signed by it; and a second, unrelated CA."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates (Debian package openssl)")
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                 "-days", "2", "-subj", f"/CN=sts-test-{ca}", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf", cwd=directory)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Any:
    _certificates(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = find_redis_server()
    assert executable, "redis-server is not installed; scripts/test.sh installs it"
    process = subprocess.Popen(
        [executable, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--tls-cert-file", "server.crt", "--tls-key-file", "server.key", "--tls-ca-cert-file", "ca.crt",
         "--tls-auth-clients", "no", "--dir", str(tmp_path), "--logfile", "redis.log"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield port, tmp_path
    finally:
        process.terminate()
        process.wait(10)


def _config(url: str) -> Config:
    return Config({"scheduler_backend": "redis", "redis": {"url": url, "key_prefix": "tls", "connect_timeout": "2s"},
                   "logging": {"loglevel": "WARNING"}})


def test_a_task_runs_over_tls_and_an_unknown_certificate_authority_is_refused(tls_redis: Any) -> None:
    port, directory = tls_redis
    good = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={directory / 'ca.crt'}"
    wrong = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={directory / 'other-ca.crt'}"
    calls.clear()

    async def main() -> None:
        scheduler = AsyncTaskScheduler(_config(good))
        scheduler.register_function("hello", hello)
        run = await scheduler.run(Task("hello", function="hello"))
        assert run.state.value == "succeeded" and calls == ["hello"]
        assert [r.id for r in await scheduler.runs("hello")] == [run.id]
        await scheduler.close()

        refused = AsyncTaskScheduler(_config(wrong))
        with pytest.raises(BackendUnavailableError, match=r"rediss://127\.0\.0\.1:\d+/0.*is unreachable.*certificate"):
            await refused.open()

    asyncio.run(main())
