"""With Redis the API is a process of its own: a task created through it is stored in Redis and
picked up by the running scheduler within a second (by the store's change notices, not by
polling). Needs sts-redis and a redis-server (started by sts-redis's ``redis_url`` fixture)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from sts_api_helpers import ADMIN, READ, ApiClient, api_config, read_address, task_body, wait_for

from sts.plugin import Config, RunState
from sts.scheduler import AsyncTaskScheduler, TaskScheduler
from sts_api.plugin import server_for

pytest.importorskip("sts_redis")


def redis_section(url: str, prefix: str) -> dict[str, Any]:
    return {"scheduler_backend": "redis", "redis": {"url": url, "key_prefix": prefix}}


def test_a_task_created_through_a_separate_api_scheduler_is_picked_up_within_a_second(redis_url: str) -> None:
    """The API side runs no loop: the running scheduler fires the new task, and runs what the
    API's run-now puts in the queue."""
    prefix = f"api-{secrets.token_hex(4)}"
    backend = redis_section(redis_url, prefix)

    async def main() -> tuple[float, dict, int]:
        running = AsyncTaskScheduler(Config({"logging": {"loglevel": "WARNING"}, **backend}))
        api_side = AsyncTaskScheduler(api_config(backend))
        await running.start()
        await api_side.start(scheduler=False, worker=False)  # as `sts api` does: no loops, just the API
        try:
            client = ApiClient(server_for(api_side).url)
            assert api_side.health().roles == ()
            sent = datetime.now(UTC)
            reply = await asyncio.to_thread(client.post, "/tasks", task_body("remote", "say", kwargs={"text": "r"}))
            assert reply.status == 201, reply.body
            for _ in range(200):
                runs = await running.runs("remote", state=RunState.SUCCEEDED)
                if runs:
                    break
                await asyncio.sleep(0.01)
            latency = (runs[0].started_at - sent).total_seconds()
            listed = await asyncio.to_thread(client.get, "/runs?task=remote", token=READ)
            patched = await asyncio.to_thread(client.call, "PATCH", "/tasks/remote", {"every": "1h"})
            assert patched.status == 200
            for _ in range(200):
                task = running.engine.plans.current("remote")
                if task is not None and task.task.version == 2:
                    break
                await asyncio.sleep(0.01)
            started = await asyncio.to_thread(client.post, "/tasks/remote/run")  # queued in Redis for any worker
            assert started.status == 202
            run_id = started.json["run"]["id"]
            for _ in range(200):
                run = await running.get_run(run_id)
                if run is not None and run.state is RunState.SUCCEEDED:
                    break
                await asyncio.sleep(0.01)
            assert (run.state, run.reason, run.task_version) == (RunState.SUCCEEDED, "api", 2)
            return latency, listed.json, running.engine.plans.current("remote").task.version
        finally:
            await api_side.stop()
            await running.stop()

    latency, listed, version = asyncio.run(main())
    assert latency < 1.0, f"picked up after {latency:.3f}s"
    assert [run["state"] for run in listed["runs"]] == ["succeeded"]  # the API reads runs from Redis too
    assert version == 2


def test_sts_api_serves_a_shared_backend_until_sigterm(redis_url: str, tmp_path: Path) -> None:
    prefix = f"api-{secrets.token_hex(4)}"
    config = tmp_path / "sts.yaml"
    config.write_text(yaml.safe_dump({**redis_section(redis_url, prefix),
                                      "api": {"address": "127.0.0.1:0", "allowed_functions": ["sts_api.demo:*"]}}))
    environment = {**os.environ, "STS_API_TOKEN": ADMIN, "STS_API_READ_TOKEN": READ}
    process = subprocess.Popen([sys.executable, "-m", "sts_cli", "api", "--config", str(config)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
    running = TaskScheduler(Config({"logging": {"loglevel": "WARNING"}, **redis_section(redis_url, prefix)}))
    try:
        client = ApiClient(read_address(process))
        running.start()
        reply = client.post("/tasks", {"name": "hello", "function": "sts_api.demo:hello"})
        assert reply.status == 201, reply.body
        wait_for(lambda: running.runs("hello", state="succeeded"))
        status = client.get("/status", token=READ).json
        assert (status["roles"], status["backend"]) == ([], "redis")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        running.stop()
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("loops", [True, False], ids=["scheduler_and_worker", "api_only"])
def test_status_says_the_backend_is_unavailable_while_redis_is_down(redis_server_factory: Any, loops: bool) -> None:
    """/status asks the backend as /ready does: it does not wait for a loop to stumble on the
    outage (an API-only process, as `sts api` runs, has no loop at all)."""
    server = redis_server_factory()
    scheduler = TaskScheduler(api_config(redis_section(server.url, f"api-{secrets.token_hex(4)}")))
    scheduler.start(scheduler=loops, worker=loops)
    try:
        client = ApiClient(server_for(scheduler.asyncio_scheduler).url)
        assert client.get("/status", token=READ).json["backend_unavailable"] is False
        server.stop()
        down = client.get("/status", token=READ)
        assert down.status == 200 and down.json["backend_unavailable"] is True, down.json
        assert client.get("/ready", token=None).status == 503
        server.start()
        wait_for(lambda: client.get("/status", token=READ).json["backend_unavailable"] is False, timeout=10)
        assert client.get("/ready", token=None).status == 200
    finally:
        scheduler.stop()
