"""The server: where it listens, a port in use, stopping, CORS, several schedulers in one process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from urllib.parse import urlsplit

import pytest
from sts_api_helpers import ADMIN, READ, ApiClient, api_config, running_api, task_body, wait_for

from sts.plugin import BackendUnavailableError, Config, Task
from sts.scheduler import AsyncTaskScheduler
from sts_api.plugin import ApiPlugin, server_for


def listening_socket() -> socket.socket:
    """A socket holding a free loopback port (what another process on the port looks like)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_port_0_binds_a_free_loopback_port_and_says_where(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sts.api")

    async def main() -> tuple[tuple[str, int], str, int]:
        async with AsyncTaskScheduler(api_config()) as scheduler:
            await scheduler.start()
            server = server_for(scheduler)
            reply = await asyncio.to_thread(ApiClient(server.url).get, "/health", token=None)
            await scheduler.stop()
        return server.address, server.url, reply.status

    (host, port), url, status = asyncio.run(main())
    assert host == "127.0.0.1" and port > 0 and url == f"http://127.0.0.1:{port}" and status == 200
    assert f"REST API at {url} (api.address 127.0.0.1:0, 2 token(s))" in caplog.text


def test_each_scheduler_has_its_own_plugin_instance_holding_only_its_own_server() -> None:
    """The entry point names ``ApiPlugin``: no module-global table of servers."""

    async def main() -> None:
        async with AsyncTaskScheduler(api_config()) as one, AsyncTaskScheduler(api_config()) as two:
            await one.start()
            await two.start()
            mine, theirs = (scheduler.plugins.instance_of(ApiPlugin) for scheduler in (one, two))
            assert isinstance(mine, ApiPlugin) and mine is not theirs
            assert mine.server(one.id) is server_for(one) is not None
            assert mine.server(two.id) is None and theirs.server(one.id) is None
            assert server_for(one).url != server_for(two).url
            await one.stop()
            assert server_for(one) is None and server_for(two) is not None
            await two.stop()

    asyncio.run(main())


def test_a_port_in_use_is_one_clear_error_and_the_scheduler_runs_on(caplog: pytest.LogCaptureFixture) -> None:
    holder = listening_socket()
    port = holder.getsockname()[1]

    async def main() -> list:
        async with AsyncTaskScheduler(api_config(address=f"127.0.0.1:{port}")) as scheduler:
            await scheduler.start()
            assert scheduler.running and server_for(scheduler) is None
            await scheduler.add_task(Task("job", function="sts_api_jobs:noop"))
            for _ in range(250):
                runs = await scheduler.runs("job", state="succeeded")
                if runs:
                    break
                await asyncio.sleep(0.02)
            await scheduler.stop()
        return runs

    try:
        runs = asyncio.run(main())
    finally:
        holder.close()
    assert [run.state.value for run in runs] == ["succeeded"]
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == [f"api.address 127.0.0.1:{port}: cannot serve the REST API there: the port is already in use "
                      f"(another sts process?). This process runs on without it; choose another address, "
                      f"e.g. STS_API__ADDRESS=127.0.0.1:8081"]


def test_stopping_the_scheduler_stops_the_server_and_frees_the_port() -> None:
    with running_api() as api:
        port = int(api.client.url.rsplit(":", 1)[1])
        assert api.client.get("/health").status == 200
    with pytest.raises(ConnectionRefusedError):
        api.client.get("/health")
    with running_api(address=f"127.0.0.1:{port}") as again:  # the same port at once
        assert again.client.get("/health").status == 200


def test_a_switched_off_api_does_not_listen() -> None:
    async def main() -> object:
        async with AsyncTaskScheduler(Config({"api": {"admin_token": "admin-token-0123456789"}})) as scheduler:
            await scheduler.start()
            server = server_for(scheduler)
            await scheduler.stop()
        return server

    assert asyncio.run(main()) is None


def test_cors_is_off_unless_origins_are_configured() -> None:
    origin = {"Origin": "https://ops.example.com"}
    preflight = {**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    with running_api() as api:
        plain = api.client.get("/tasks", headers=origin)
        assert plain.status == 200 and "access-control-allow-origin" not in plain.headers
        assert api.client.call("OPTIONS", "/tasks", headers=preflight, token=None).status == 405
    with running_api(cors_origins=["https://ops.example.com"]) as api:
        allowed = api.client.get("/tasks", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://ops.example.com"
        checked = api.client.call("OPTIONS", "/tasks", headers=preflight, token=None)
        assert checked.status == 200 and "POST" in checked.headers["access-control-allow-methods"]
        other = api.client.get("/tasks", headers={"Origin": "https://evil.example.com"})
        assert "access-control-allow-origin" not in other.headers


def test_health_and_readiness_need_no_token(api) -> None:
    health = api.client.get("/health", token=None)
    assert health.status == 200 and health.json == {"status": "ok", "running": True}
    ready = api.client.get("/ready", token=None)
    assert ready.status == 200 and ready.json == {"ready": True, "checks": {"scheduler": "ok", "backend": "ok"}}
    assert api.client.get("/status", token=None).status == 401


def test_status_and_plugins_describe_the_scheduler(api) -> None:
    status = api.client.get("/status", token=READ).json
    assert status["running"] and status["roles"] == ["scheduler", "worker"] and status["backend"] == "memory"
    assert status["abandoned_threads"] == 0 and status["waiting_for_thread"] == 0
    plugins = {p["name"]: p for p in api.client.get("/plugins", token=READ).json["plugins"]}
    assert plugins["api"]["status"] == "enabled" and not plugins["api"]["off_in_config"]
    assert "commands:api" in plugins["api"]["provides"] and "scheduler_started" in plugins["api"]["hooks"]
    assert plugins["memory"]["distribution"] == "sts-memory"


def test_every_response_says_not_to_cache_or_sniff(api) -> None:
    for reply in (api.client.get("/tasks"), api.client.get("/nowhere"), api.client.get("/tasks", token=None)):
        assert reply.headers["cache-control"] == "no-store" and reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["content-type"] == "application/json"


def test_two_schedulers_in_one_process_serve_their_own_tasks() -> None:
    with running_api() as one, running_api() as two:
        assert one.client.url != two.client.url
        one.client.post("/tasks", task_body("only_here", every="1h"))
        wait_for(lambda: one.client.get("/tasks/only_here").status == 200)
        assert two.client.get("/tasks/only_here").status == 404


def raw_exchange(url: str, data: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection; everything the server sends until it closes, and when it closed."""
    parts = urlsplit(url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.settimeout(wait)
        if data:
            sock.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    return received, time.monotonic() - started


@pytest.mark.parametrize(
    ("host", "status"),
    [("evil.example", 421), ("evil.example:8080", 421), ("127.0.0.1.nip.io", 421), ("localhost", 200),
     ("localhost:8080", 200), ("127.0.0.1", 200), ("127.0.0.1:9", 200), ("[::1]:8080", 200), ("LOCALHOST", 200)],
)
def test_on_loopback_only_loopback_host_names_are_answered(api, host: str, status: int) -> None:
    reply = api.client.get("/tasks", headers={"Host": host})
    assert reply.status == status, reply.body
    if status == 421:  # before authentication: also without a token, and as JSON
        assert reply.json["error"] == "misdirected_request" and "api.allowed_hosts" in reply.json["message"]
        assert api.client.get("/health", token=None, headers={"Host": host}).status == 421


def test_allowed_hosts_replace_the_loopback_names() -> None:
    with running_api(allowed_hosts=["api.example.com", "*.ops.example.com"]) as api:
        assert api.client.get("/tasks", headers={"Host": "api.example.com:443"}).status == 200
        assert api.client.get("/tasks", headers={"Host": "eu.ops.example.com"}).status == 200
        assert api.client.get("/tasks", headers={"Host": "ops.example.com.evil.example"}).status == 421
        assert api.client.get("/tasks", headers={"Host": "localhost"}).status == 421


def test_readiness_tells_why_the_backend_failed_only_to_a_token_holder(api, monkeypatch: pytest.MonkeyPatch) -> None:
    async def unreachable() -> None:
        raise BackendUnavailableError("cannot reach redis at 10.1.2.3:6379 (secret-host.internal)")

    monkeypatch.setattr(api.scheduler.asyncio_scheduler.backend.store, "next_due_time", unreachable)
    anonymous = api.client.get("/ready", token=None)
    assert anonymous.status == 503 and "10.1.2.3" not in anonymous.text
    assert anonymous.json["checks"]["backend"] == "unavailable (send a token for the details)"
    assert "10.1.2.3" not in api.client.get("/ready", token="not-a-valid-token-0123456789").text
    detailed = api.client.get("/ready", token=READ)
    assert detailed.status == 503 and detailed.json["checks"]["backend"] == (
        "BackendUnavailableError: cannot reach redis at 10.1.2.3:6379 (secret-host.internal)")
    monkeypatch.undo()


def test_a_body_that_does_not_arrive_in_time_is_408_and_the_connection_closed() -> None:
    with running_api(request_timeout="0.5s") as api:
        head = (f"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": ").encode()
        received, took = raw_exchange(api.client.url, head)
        assert received.startswith(b"HTTP/1.1 408 ") and 0.4 < took < 3, (received, took)
        assert b'"error": "timeout"' in received and b"api.request_timeout" in received
        assert api.client.get("/tasks").json["tasks"] == []


@pytest.mark.parametrize("data", [b"", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_connection_whose_request_head_stalls_is_closed(data: bytes) -> None:
    with running_api(request_timeout="0.5s") as api:
        received, took = raw_exchange(api.client.url, data)
        assert received == b"" and 0.4 < took < 3, (received, took)
        assert api.client.get("/health").status == 200


def test_a_kept_alive_connection_has_the_same_deadline_for_its_next_request() -> None:
    with running_api(request_timeout="0.5s") as api:
        parts = urlsplit(api.client.url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.settimeout(10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = b""
            while not first.endswith(b"}"):
                first += sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200 ")
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the blank line
            started = time.monotonic()
            assert sock.recv(65536) == b""
            assert time.monotonic() - started < 3


def test_a_client_trickling_a_body_no_handler_reads_is_cut_off() -> None:
    with running_api(request_timeout="0.5s") as api:
        parts = urlsplit(api.client.url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.settimeout(10)
            sock.sendall(f"POST /tasks/nope/run HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\n"
                         "Content-Length: 100000\r\n\r\n".encode())
            answer = b""
            while not answer.endswith(b"}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 404 ")
            started = time.monotonic()
            with contextlib.suppress(OSError):
                while time.monotonic() - started < 5:  # a byte every 0.1 s would keep uvicorn waiting for ever
                    sock.sendall(b"x")
                    time.sleep(0.1)
            assert time.monotonic() - started < 3


def test_connections_beyond_max_connections_are_refused_with_503() -> None:
    with running_api(max_connections=3) as api:
        parts = urlsplit(api.client.url)
        idle = [socket.create_connection((parts.hostname, parts.port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            assert api.client.get("/health").status == 503
        finally:
            for sock in idle:
                sock.close()
        wait_for(lambda: api.client.get("/health").status == 200)


def test_a_request_that_is_not_http_is_a_json_400(api) -> None:
    request = b"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +1\r\n\r\n{"
    received, _ = raw_exchange(api.client.url, request)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head.lower()
    assert json.loads(body)["error"] == "malformed_request"


def test_a_huge_content_length_is_413_also_in_a_head_sent_in_pieces_after_another_request(api) -> None:
    """The length h11 refuses (over 20 digits) is found in a head that arrives in pieces, on a
    kept-alive connection that served a request before."""
    parts = urlsplit(api.client.url)
    pieces = [b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
              f"POST /tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {ADMIN}\r\nContent-Le".encode(),
              b"ngth: 1" + b"0" * 25 + b"\r\nContent-Type: application/json\r\n\r\n{}"]
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.settimeout(10)
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(0.1)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                received += chunk
    first, _, second = received.partition(b"HTTP/1.1 413 ")
    assert first.startswith(b"HTTP/1.1 200 ") and second, received
    assert json.loads(second.partition(b"\r\n\r\n")[2])["error"] == "too_large"
