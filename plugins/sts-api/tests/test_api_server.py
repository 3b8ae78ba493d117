"""The server: where it listens, a port in use, stopping, CORS, several schedulers in one process."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from sts_api_helpers import READ, ApiClient, api_config, running_api, task_body, wait_for

from sts_api.plugin import server_for
from sts_core.config import Config
from sts_core.model import Task
from sts_core.scheduler import AsyncTaskScheduler


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
