"""Sampled and scrape-time metrics: queue depth, runs in flight, heartbeats, plugin load errors,
last success across restarts, and fires missed."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

from sts_prometheus_helpers import Scrape, scrape, scrape_until

from sts.plugin import PluginInfo, PluginManager, Task, hookimpl
from sts_core.testing import FakeClock
from sts_prometheus.config import Settings
from sts_prometheus.metrics import Metrics, build_metrics
from sts_prometheus.plugin import exporter_for
from sts_prometheus.sampler import Sampler


async def succeed() -> None:
    return None


async def fail() -> None:
    raise ConnectionError("down")


def queue(scrape: Scrape, broker: str = "memory") -> dict[str, float]:
    return {
        dict(labels)["state"]: value
        for labels, value in scrape.labelled("sts_queue_runs").items()
        if dict(labels)["broker"] == broker
    }


def test_queue_runs_in_flight_and_heartbeats_reflect_the_scheduler(make_scheduler, clock) -> None:
    release = asyncio.Event()

    async def busy() -> None:
        await release.wait()

    async def main() -> tuple[Scrape, Any]:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("busy", busy))
            await scheduler.add_task(Task("later", fail, retries=1, retry_delay="1h"))
            await scheduler.start()
            await clock.advance_settled(2)  # the worker loop beats every second
            await exporter_for(scheduler).sampler.sample()
            health = scheduler.health()
            result = await scrape(exporter_for(scheduler).url)
            release.set()
            await scheduler.stop(grace=0)
        return result, health

    scrape_, health = asyncio.run(main())
    assert queue(scrape_) == {"ready": 0, "delayed": 1, "leased": 1, "dead": 0}
    assert scrape_.value("sts_runs_in_flight") == 1 == health.runs_in_flight
    assert set(health.beats) == {"scheduler", "worker"}
    for loop, when in health.beats.items():
        assert scrape_.value("sts_scheduler_heartbeat_timestamp_seconds", loop=loop) == when.timestamp()
    assert health.beats["worker"] == FakeClock().now().replace(second=2)
    assert scrape_.value("sts_scheduler_running") == 1
    assert scrape_.value("sts_backend_unavailable") == 0


def test_queue_is_sampled_every_interval_on_the_scheduler_clock(make_scheduler, clock) -> None:
    async def main() -> tuple[Scrape, Scrape]:
        async with make_scheduler(sample_interval="5s") as scheduler:
            await scheduler.start()
            await clock.settle()
            url = exporter_for(scheduler).url
            before = await scrape(url)
            await scheduler.add_task(Task("later", fail, retries=1, retry_delay="1h"))
            await clock.settle()
            await clock.advance_settled(5)  # the next sample
            after = await scrape(url)
            await scheduler.stop(grace=0)
        return before, after

    before, after = asyncio.run(main())
    assert queue(before)["delayed"] == 0
    assert queue(after)["delayed"] == 1


class FakeBroker:
    """A broker offering only ``depth()``, or ``queue_counts()`` that fails or hangs when told."""

    def __init__(self, *, counts: bool = True) -> None:
        self.trouble: str | None = None
        if not counts:
            self.queue_counts = None

    async def depth(self) -> int:
        return 7

    async def queue_counts(self) -> dict[str, int]:
        if self.trouble == "error":
            raise ConnectionError("broker unreachable")
        if self.trouble == "hang":
            await asyncio.sleep(30)
        return {"ready": 1, "delayed": 2, "leased": 3, "dead": 4}


def fake_scheduler(broker: FakeBroker, infos: list[PluginInfo] | None = None) -> Any:
    async def no_tasks() -> list:
        return []

    async def queue_counts() -> dict[str, int] | None:  # as AsyncTaskScheduler.queue_counts
        return None if broker.queue_counts is None else await broker.queue_counts()

    return SimpleNamespace(
        queue_counts=queue_counts,
        queue_depth=broker.depth,
        plugins=SimpleNamespace(plugin_infos=lambda: infos or []),
        clock=FakeClock(),
        list_tasks=no_tasks,
    )


def queue_gauges(metrics: Metrics) -> dict[str, float]:
    return {sample.labels["state"]: sample.value for family in metrics.queue_runs.collect()
            for sample in family.samples}


def sampled(broker: FakeBroker, step: Any) -> tuple[dict[str, float], float]:
    """Run ``step(broker, sampler, metrics)`` with a sampler of ``fake_scheduler(broker)``; return the
    queue gauges and the count of failed samples."""
    metrics = build_metrics(Settings(), health=lambda: None, backend="fake", version="0")
    sampler = Sampler(fake_scheduler(broker), metrics, interval=0.05, broker_label="fake")

    async def main() -> None:
        await step(broker, sampler, metrics)

    asyncio.run(main())
    errors = sum(sample.value for family in metrics.queue_sample_errors.collect() for sample in family.samples
                 if sample.name.endswith("_total"))
    return queue_gauges(metrics), errors


def test_a_broker_without_queue_counts_reports_its_depth_as_queued() -> None:
    async def once(broker: FakeBroker, sampler: Sampler, metrics: Metrics) -> None:
        await sampler.sample()

    assert sampled(FakeBroker(counts=False), once) == ({"queued": 7}, 0)


def test_a_failing_or_hanging_queue_sample_drops_the_gauges_counts_and_warns_once(caplog) -> None:
    seen: list[dict[str, float]] = []

    async def trouble(broker: FakeBroker, sampler: Sampler, metrics: Metrics) -> None:
        await sampler.sample()
        broker.trouble = "error"
        await sampler.sample()
        broker.trouble = "hang"  # the sample gives up after one interval (0.05s here)
        await sampler.sample()
        seen.append(queue_gauges(metrics))
        broker.trouble = None
        await sampler.sample()

    with caplog.at_level(logging.WARNING, logger="sts.prometheus"):
        gauges, errors = sampled(FakeBroker(), trouble)
    assert seen == [{}]  # no stale depth while sampling fails
    assert gauges == {"ready": 1, "delayed": 2, "leased": 3, "dead": 4}
    assert errors == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "sts.prometheus"]
    assert warnings == [
        "sampling the queue for metrics failed (ConnectionError: broker unreachable); retrying every 0.05s",
        "sampling the queue for metrics works again",
    ]


class BrokenPlugin:
    """Its ``handle_event`` names an argument the hook does not have: registering it fails."""

    @hookimpl
    def handle_event(self, evnt: Any) -> None:
        """Never called."""


def test_plugins_that_failed_to_load_are_reported(make_scheduler) -> None:
    async def main() -> Scrape:
        async with make_scheduler(plugins=PluginManager(plugins=[("broken", BrokenPlugin())])) as scheduler:
            await scheduler.start()
            result = await scrape_until(exporter_for(scheduler).url,
                                        lambda s: s.value("sts_plugin_load_errors", plugin="broken") is not None)
            await scheduler.stop()
        return result

    result = asyncio.run(main())
    assert result.value("sts_plugin_load_errors", plugin="broken") == 1
    assert result.value("sts_plugin_load_errors", plugin="prometheus") == 0
    assert result.value("sts_plugin_load_errors", plugin="memory") == 0


def test_last_success_survives_a_restart_and_goes_with_its_task(make_scheduler, clock) -> None:
    async def main() -> tuple[Scrape, Scrape, float]:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("nightly", succeed))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            (run,) = await scheduler.runs("nightly")
            await scheduler.stop()
            clock.advance(3600)
            await scheduler.start()  # a new exporter: the time comes from the run history
            await clock.settle()
            url = exporter_for(scheduler).url
            restarted = await scrape(url)
            await scheduler.remove_task("nightly")
            removed = await scrape_until(
                url, lambda s: not s.labelled("sts_task_last_success_timestamp_seconds")
            )
            await scheduler.stop()
        return restarted, removed, run.ended_at.timestamp()

    restarted, removed, ended = asyncio.run(main())
    assert restarted.value("sts_runs_total", task="nightly", state="succeeded") == 0  # counters restart at 0
    assert restarted.value("sts_task_last_success_timestamp_seconds", task="nightly") == ended
    assert removed.labelled("sts_task_last_success_timestamp_seconds") == {}
    assert removed.labelled("sts_runs_total") == {}  # a removed task's series go with it


def test_missed_fires_are_counted_by_task_and_policy(make_scheduler, clock) -> None:
    async def main() -> Scrape:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("tick", succeed, every="10s", misfire="skip"))
            await scheduler.start()
            await clock.settle()
            clock.advance(100)  # fires at 10s ... 100s are all due at once
            await clock.settle()
            await scheduler.wait_idle()
            result = await scrape_until(exporter_for(scheduler).url,
                                        lambda s: s.value("sts_fires_missed_total", task="tick", policy="skip"))
            await scheduler.stop()
        return result

    result = asyncio.run(main())
    assert result.value("sts_fires_missed_total", task="tick", policy="skip") == 9
    assert result.value("sts_runs_total", task="tick", state="skipped") == 1


def test_hung_sync_functions_show_as_abandoned_threads_until_they_return(make_scheduler, clock) -> None:
    release = threading.Event()

    def hang() -> None:
        release.wait(30)

    async def main() -> tuple[Scrape, Scrape]:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("hang", hang, timeout=0.05))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()  # timed out after 0.05 s of real time; the function still runs
            url = exporter_for(scheduler).url
            hung = await scrape_until(url, lambda s: s.value("sts_threads_abandoned_total", task="hang"))
            release.set()
            returned = await scrape_until(url, lambda s: s.value("sts_abandoned_threads") == 0)
            await scheduler.stop()
        return hung, returned

    try:
        hung, returned = asyncio.run(main())
    finally:
        release.set()
    assert hung.value("sts_threads_abandoned_total", task="hang") == 1
    assert hung.value("sts_abandoned_threads") == 1
    assert hung.value("sts_runs_waiting_for_thread") == 0
    assert returned.value("sts_threads_abandoned_total", task="hang") == 1  # a counter: it stays
