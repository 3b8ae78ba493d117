"""The HTTP side: where metrics are served, a port in use, stopping, several schedulers in one process."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.error
import urllib.request
from importlib import metadata

import pytest
from sts_prometheus_helpers import Scrape, scrape, scrape_until

from sts.plugin import Config, RunState, Task
from sts.scheduler import AsyncTaskScheduler
from sts_prometheus.plugin import PrometheusPlugin, exporter_for


async def succeed() -> None:
    return None


def listening_socket() -> socket.socket:
    """A socket holding a free loopback port (what another process on the port looks like)."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


def test_port_0_binds_a_free_port_on_loopback_and_says_where(make_scheduler, caplog) -> None:
    caplog.set_level(logging.INFO, logger="sts.prometheus")

    async def main() -> tuple[tuple[str, int], str]:
        async with make_scheduler() as scheduler:
            await scheduler.start()
            exporter = exporter_for(scheduler)
            address, url = exporter.address, exporter.url
            await scheduler.stop()
        return address, url

    (host, port), url = asyncio.run(main())
    assert host == "127.0.0.1" and port > 0
    assert url == f"http://127.0.0.1:{port}/metrics"
    assert f"Prometheus metrics at {url} (prometheus.address 127.0.0.1:0)" in caplog.text


def test_a_port_in_use_is_one_clear_error_and_the_scheduler_runs_on(make_scheduler, clock, caplog) -> None:
    holder = listening_socket()
    port = holder.getsockname()[1]

    async def main() -> list:
        async with make_scheduler(address=f"127.0.0.1:{port}") as scheduler:
            await scheduler.add_task(Task("job", succeed))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            assert scheduler.running and exporter_for(scheduler) is None
            runs = await scheduler.runs("job")
            await scheduler.stop()
        return runs

    try:
        runs = asyncio.run(main())
    finally:
        holder.close()
    assert [run.state for run in runs] == [RunState.SUCCEEDED]
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert f"prometheus.address 127.0.0.1:{port}" in message
    assert "already in use" in message
    assert "STS_PROMETHEUS__ADDRESS=127.0.0.1:9465 sts worker" in message


def test_stopping_the_scheduler_stops_the_server_and_frees_the_port(make_scheduler) -> None:
    async def main() -> Scrape:
        async with make_scheduler() as first:
            await first.start()
            exporter = exporter_for(first)
            port = exporter.address[1]
            await scrape(exporter.url)
            await first.stop()
        assert exporter_for(first) is None
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(urllib.request.urlopen, exporter.url, timeout=2)
        async with make_scheduler(address=f"127.0.0.1:{port}") as second:  # the same port again
            await second.start()
            assert exporter_for(second).address == ("127.0.0.1", port)
            result = await scrape(exporter_for(second).url)
            await second.stop()
        return result

    assert asyncio.run(main()).value("sts_scheduler_running") == 1


def test_metrics_stay_served_while_runs_in_flight_finish_during_a_stop(make_scheduler) -> None:
    release = asyncio.Event()

    async def busy() -> None:
        await release.wait()

    async def main() -> tuple[Scrape, Scrape]:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("busy", busy))
            await scheduler.start()
            url = exporter_for(scheduler).url
            await scrape_until(url, lambda s: s.value("sts_runs_in_flight") == 1)
            stopping = asyncio.create_task(scheduler.stop(grace=30))
            during = await scrape_until(url, lambda s: s.value("sts_scheduler_running") == 0)
            release.set()
            await stopping
            return during, await asyncio.to_thread(_after_stop, url)

    during, _ = asyncio.run(main())
    assert during.value("sts_runs_in_flight") == 1  # the run still finishing is visible


def _after_stop(url: str) -> None:
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_only_metrics_is_served(make_scheduler) -> None:
    async def main() -> int:
        async with make_scheduler() as scheduler:
            await scheduler.start()
            base = exporter_for(scheduler).url.removesuffix("/metrics")
            try:
                await asyncio.to_thread(urllib.request.urlopen, base + "/other", timeout=2)
            except urllib.error.HTTPError as exc:
                status = exc.code
            else:
                status = 200
            await scheduler.stop()
        return status

    assert asyncio.run(main()) == 404


def test_each_scheduler_has_its_own_plugin_instance_holding_only_its_own_exporter(make_scheduler) -> None:
    """The entry point names ``PrometheusPlugin``: no module-global table of exporters."""

    async def main() -> None:
        async with make_scheduler() as one, make_scheduler() as two:
            await one.start()
            await two.start()
            mine, theirs = (scheduler.plugins.instance_of(PrometheusPlugin) for scheduler in (one, two))
            assert isinstance(mine, PrometheusPlugin) and mine is not theirs
            assert mine.exporter(one.id) is exporter_for(one) is not None
            assert mine.exporter(two.id) is None and theirs.exporter(one.id) is None
            await one.stop()
            assert exporter_for(one) is None and exporter_for(two) is not None
            await two.stop()

    asyncio.run(main())


def test_two_schedulers_in_one_process_keep_their_metrics_apart(clock) -> None:
    def build() -> AsyncTaskScheduler:
        config = Config({"logging": {"loglevel": "WARNING"},
                         "prometheus": {"enabled": True, "address": "127.0.0.1:0", "process_metrics": False}})
        return AsyncTaskScheduler(config, clock=clock)

    async def main() -> tuple[Scrape, Scrape, Scrape, str, str]:
        async with build() as one, build() as two, AsyncTaskScheduler(Config(), clock=clock) as silent:
            await one.add_task(Task("one_job", succeed))
            await two.add_task(Task("two_job", succeed))
            await two.add_task(Task("two_other", succeed))
            await silent.add_task(Task("silent_job", succeed))
            for scheduler in (silent, one, two):
                await scheduler.start()
            await clock.settle()
            for scheduler in (one, two, silent):
                await scheduler.wait_idle()
            assert exporter_for(silent) is None  # prometheus.enabled is false by default
            first = await scrape_until(exporter_for(one).url, lambda s: len(s.counted("sts_runs_total")) == 1)
            second = await scrape_until(exporter_for(two).url, lambda s: len(s.counted("sts_runs_total")) == 2)
            await asyncio.sleep(0.05)  # let any stray event land before the last look
            again = await scrape(exporter_for(one).url)
            for scheduler in (one, two, silent):
                await scheduler.stop()
        return first, second, again, one.id, two.id

    first, second, again, one_id, two_id = asyncio.run(main())
    assert first.counted("sts_runs_total") == {frozenset({("task", "one_job"), ("state", "succeeded")}): 1}
    assert {dict(labels)["task"] for labels in first.labelled("sts_runs_total")} == {"one_job"}
    assert {dict(labels)["task"] for labels in second.labelled("sts_runs_total")} == {"two_job", "two_other"}
    assert again.labelled("sts_runs_total") == first.labelled("sts_runs_total")
    assert info_labels(first) == {"scheduler_id": one_id, "roles": "scheduler,worker", "backend": "memory",
                                  "version": metadata.version("SimpleTaskScheduler")}
    assert info_labels(second)["scheduler_id"] == two_id


def info_labels(scrape: Scrape) -> dict[str, str]:
    (labels,) = scrape.labelled("sts_scheduler_info")
    return dict(labels)
