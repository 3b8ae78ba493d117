"""One port per process, on a shared backend: a scheduler-only and a worker-only scheduler (as
`sts scheduler` and `sts worker` run them) each serve their own metrics. Needs sts-redis and a
redis-server (started by sts-redis's ``redis_url`` fixture)."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from sts_prometheus_helpers import Scrape, scrape, scrape_until

from sts.plugin import Config, Task
from sts.scheduler import AsyncTaskScheduler
from sts_prometheus.plugin import exporter_for


def redis_scheduler(url: str, prefix: str) -> AsyncTaskScheduler:
    return AsyncTaskScheduler(Config({
        "logging": {"loglevel": "WARNING"},
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": prefix, "lease_time": "5s", "poll_interval": "1s"},
        "scheduler": {"shutdown_grace": "1s"},
        "prometheus": {"enabled": True, "address": "127.0.0.1:0", "process_metrics": False,
                       "sample_interval": "100ms"},
    }))


def roles(scrape: Scrape) -> str:
    (labels,) = scrape.labelled("sts_scheduler_info")
    return dict(labels)["roles"]


def test_a_scheduler_process_and_a_worker_process_each_serve_their_own_metrics(request) -> None:
    pytest.importorskip("sts_redis")
    url = request.getfixturevalue("redis_url")
    prefix = f"prom-{secrets.token_hex(4)}"

    async def main() -> tuple[Scrape, Scrape, set[int]]:
        fires, works = redis_scheduler(url, prefix), redis_scheduler(url, prefix)
        await fires.start(worker=False)
        await works.start(scheduler=False)
        try:
            await fires.add_task(Task("tick", function="sts_core.testing:noop", every=0.2))
            worker = await scrape_until(
                exporter_for(works).url,
                lambda s: (s.value("sts_runs_total", task="tick", state="succeeded") or 0) >= 2,
            )
            scheduler = await scrape(exporter_for(fires).url)
            ports = {exporter_for(fires).address[1], exporter_for(works).address[1]}
        finally:
            await fires.stop()
            await works.stop()
        return scheduler, worker, ports

    scheduler, worker, ports = asyncio.run(main())
    assert len(ports) == 2
    assert roles(scheduler) == "scheduler" and roles(worker) == "worker"
    assert scheduler.counted("sts_runs_total") == {}  # runs are counted where they execute
    assert set(scheduler.labelled("sts_scheduler_heartbeat_timestamp_seconds")) == {frozenset({("loop", "scheduler")})}
    assert set(worker.labelled("sts_scheduler_heartbeat_timestamp_seconds")) == {frozenset({("loop", "worker")})}
    for result in (scheduler, worker):  # the same shared queue, seen from both
        states = {dict(labels)["state"] for labels in result.labelled("sts_queue_runs")}
        assert states == {"ready", "delayed", "leased", "dead"}
        assert {dict(labels)["broker"] for labels in result.labelled("sts_queue_runs")} == {"redis"}
    assert worker.value("sts_task_last_success_timestamp_seconds", task="tick") is not None


def test_queue_metrics_name_rabbitmq_when_it_delivers_the_runs(request) -> None:
    pytest.importorskip("sts_redis")
    pytest.importorskip("sts_rabbitmq")
    from sts_rabbitmq.testing import delete_topology

    url = request.getfixturevalue("redis_url")
    server = request.getfixturevalue("rabbitmq_server")
    prefix = f"prom-{secrets.token_hex(4)}"
    config = Config({
        "logging": {"loglevel": "WARNING"},
        "scheduler_backend": "redis",
        "broker": "rabbitmq",
        "redis": {"url": url, "key_prefix": prefix},
        "rabbitmq": {"url": server.url(), "prefix": prefix},
        "scheduler": {"shutdown_grace": "1s"},
        "prometheus": {"enabled": True, "address": "127.0.0.1:0", "process_metrics": False,
                       "sample_interval": "100ms"},
    })

    async def main() -> Scrape:
        sched = AsyncTaskScheduler(config)
        await sched.start()
        try:
            await sched.add_task(Task("tick", function="sts_core.testing:noop", every=0.2))
            return await scrape_until(
                exporter_for(sched).url,
                lambda s: (s.value("sts_runs_total", task="tick", state="succeeded") or 0) >= 2
                and bool(s.labelled("sts_queue_runs")),
            )
        finally:
            await sched.stop()

    try:
        result = asyncio.run(main())
    finally:
        delete_topology(server, prefix)
    assert {dict(labels)["broker"] for labels in result.labelled("sts_queue_runs")} == {"rabbitmq"}
    assert {dict(labels)["state"] for labels in result.labelled("sts_queue_runs")} == {
        "ready", "delayed", "leased", "dead"}
