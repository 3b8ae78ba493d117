"""Helpers for the api plugin tests (imported by name: this folder is on sys.path).

Every request goes over a real socket to a server on a free loopback port.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from sts.plugin import Config
from sts.scheduler import TaskScheduler
from sts_api.plugin import server_for

ADMIN = "admin-token-for-tests-0123456789"
READ = "read-token-for-tests-0123456789"
JOBS = "sts_api_jobs"


def api_config(backend: Mapping[str, Any] | None = None, **section: Any) -> Config:
    """A quiet config with the API on a free loopback port, both tokens, ``sts_api_jobs:*`` allowed."""
    settings = {"enabled": True, "address": "127.0.0.1:0", "admin_token": ADMIN, "read_token": READ,
                "allowed_functions": [f"{JOBS}:*"], **section}
    return Config({"logging": {"loglevel": "WARNING"}, "scheduler": {"shutdown_grace": "1s"}, "api": settings,
                   **(backend or {})})


@attrs.frozen
class Reply:
    """An HTTP response: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


@attrs.frozen
class ApiClient:
    """Sends requests to the API at ``url`` (``http://host:port``)."""

    url: str

    def call(self, method: str, path: str, body: Any = None, *, token: str | None = ADMIN,
             headers: Mapping[str, str] | None = None, raw: bytes | None = None,
             chunks: list[bytes] | None = None, content_type: str | None = "application/json") -> Reply:
        """One request; ``body`` is sent as JSON, ``raw`` as it is, ``chunks`` with chunked encoding,
        each as ``content_type`` (None: no Content-Type header)."""
        parts = urlsplit(self.url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        has_body = body is not None or raw is not None or chunks is not None
        sent = {"Content-Type": content_type} if has_body and content_type is not None else {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            if chunks is not None:
                connection.request(method, path, body=iter(chunks), headers=sent, encode_chunked=True)
            else:
                connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
        finally:
            connection.close()

    def get(self, path: str, **kwargs: Any) -> Reply:
        """``GET path``."""
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        """``POST path``."""
        return self.call("POST", path, body, **kwargs)


@attrs.frozen
class RunningApi:
    """A running scheduler and a client for its API."""

    scheduler: TaskScheduler
    client: ApiClient

    def runs(self, task: str, **query: Any) -> list[dict[str, Any]]:
        """The runs of ``task`` as the API lists them."""
        query_text = "&".join(f"{key}={value}" for key, value in {"task": task, **query}.items())
        reply = self.client.get(f"/runs?{query_text}")
        assert reply.status == 200, reply.body
        return reply.json["runs"]


@contextlib.contextmanager
def running_api(config: Config | None = None, **section: Any) -> Iterator[RunningApi]:
    """A memory-backend scheduler serving the API (``section`` overrides its keys) until the block ends."""
    scheduler = TaskScheduler(config or api_config(**section))
    try:
        scheduler.start()
        server = server_for(scheduler.asyncio_scheduler)
        assert server is not None, "the API did not start"
        yield RunningApi(scheduler, ApiClient(server.url))
    finally:
        scheduler.stop()


def task_body(name: str, function: str = "noop", **options: Any) -> dict[str, Any]:
    """A task-file entry running ``sts_api_jobs:<function>``."""
    return {"name": name, "function": f"{JOBS}:{function}", **options}


def wait_for(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy (returned) or ``timeout`` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        time.sleep(interval)


def read_address(process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    """The URL from the ``REST API at http://...`` line the process prints."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        lines.append(line)
        if "REST API at http://" in line:
            return line.split("REST API at ", 1)[1].split()[0]
        if not line and process.poll() is not None:
            break
    raise AssertionError("no address printed:\n" + "".join(lines))
