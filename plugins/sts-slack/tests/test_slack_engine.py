"""End to end: a real ``AsyncTaskScheduler`` on the memory backend with the Slack plugin."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from sts_slack_helpers import T0, headers, make_run, make_task

import sts_memory.plugin
import sts_tasks.plugin
import sts_triggers.plugin
from sts.plugin import Config, PluginManager, RunState, Task, TaskValidationError
from sts.plugin import events as ev
from sts.scheduler import AsyncTaskScheduler
from sts_core.testing import FakeClock
from sts_slack.plugin import SlackPlugin
from sts_slack.testing import FakeSlack


def build(slack_section: dict[str, Any], plugin: SlackPlugin, clock: Any = None) -> AsyncTaskScheduler:
    config = Config({"logging": {"loglevel": "WARNING"}, "slack": {"enabled": True, **slack_section}})
    plugins = PluginManager(entry_points=False, plugins=[
        ("memory", sts_memory.plugin), ("triggers", sts_triggers.plugin), ("tasks", sts_tasks.plugin),
        ("slack", plugin),
    ])
    return AsyncTaskScheduler(config, clock=clock, plugins=plugins)


class Flaky:
    """Fails its first ``failures`` calls, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"warehouse unreachable (call {self.calls})")
        return "loaded"


def test_retries_a_final_failure_and_the_recovery_reach_slack_from_a_real_scheduler(slack: FakeSlack):
    clock = FakeClock()
    plugin = SlackPlugin(host="web-1")
    section = {"webhook_url": slack.url(), "alert_on": {"retry": True}, "throttle": 0,
               "dashboard_url": "https://sts.example.com/runs/{run_id}"}

    async def main() -> list[Any]:
        async with build(section, plugin, clock) as scheduler:
            await scheduler.add_task(Task("load", Flaky(failures=2), every="1m", retries=1, retry_delay="10s"))
            await scheduler.add_task(Task("quiet", Flaky(failures=9), every="1m", alerts={"slack": False}))
            await scheduler.start()
            for _ in range(30):  # two fires of "load": fail, retry fails; then success
                clock.advance(5)
                await clock.settle()
            runs = await scheduler.runs("load")
            await scheduler.stop()
        return runs

    runs = asyncio.run(main())
    assert RunState.SUCCEEDED in [r.state for r in runs]
    assert headers(slack.payloads) == [
        ":warning: load failed attempt 1; retrying",
        ":red_circle: load failed",
        ":large_green_circle: load recovered",
    ]
    failure = slack.payloads[1]
    assert "ConnectionError: warehouse unreachable (call 2)" in failure["text"]
    assert "(attempt 2 of 2)" in failure["text"] and "host web-1" in failure["text"]
    assert failure["blocks"][-2]["elements"][0]["url"].startswith("https://sts.example.com/runs/")
    assert "raise ConnectionError" in next(
        b["text"]["text"] for b in failure["blocks"] if b.get("text", {}).get("text", "").startswith("*Traceback*"))


def test_a_hanging_slack_does_not_delay_runs_or_the_stop():
    plugin = SlackPlugin(host="web-1")
    started: list[float] = []

    async def healthy() -> None:
        started.append(time.monotonic())

    async def broken() -> None:
        raise RuntimeError("always")

    grace, timeout = 0.3, 0.5  # slack.shutdown_grace, slack.timeout

    async def main(url: str) -> tuple[list[Any], float, Any]:
        section = {"webhook_url": url, "throttle": 0, "timeout": f"{timeout}s", "max_attempts": 2, "backoff": "50ms",
                   "shutdown_grace": f"{grace}s"}
        async with build(section, plugin) as scheduler:
            await scheduler.add_task(Task("broken", broken, every=0.1))
            await scheduler.add_task(Task("healthy", healthy, every=0.2))
            await scheduler.start()
            await asyncio.sleep(2.0)
            runs = await scheduler.runs("healthy", limit=1000)
            sender = plugin.instance(scheduler.id).sender
            began = time.monotonic()
            await scheduler.stop()
            stop_took = time.monotonic() - began
        return runs, stop_took, sender

    with FakeSlack(hang_seconds=30) as hanging:
        hanging.answer(then="hang")
        runs, stop_took, sender = asyncio.run(main(hanging.url()))
        assert hanging.requests, "the sender did try"
    assert sender.sent == 0 and sender.failed >= 1
    succeeded = [r for r in runs if r.state is RunState.SUCCEEDED]
    assert len(succeeded) >= 8  # every 0.2 s for 2 s
    late = [(r.started_at - r.scheduled_for).total_seconds() for r in succeeded]
    # The hanging server answers after 30 s: a loop blocked by the sender would show runs late
    # by whole HTTP timeouts and a stop that waits out requests. The bounds leave CI headroom.
    assert max(late) < 0.5, late
    assert stop_took < grace + timeout + 0.5, stop_took  # the close: grace, then one request in progress


def test_the_entry_point_plugin_alerts_when_switched_on_in_the_config(slack: FakeSlack):

    clock = FakeClock()

    async def broken() -> None:
        raise LookupError("no such partition")

    async def main() -> None:
        config = Config({"logging": {"loglevel": "WARNING"},
                         "slack": {"enabled": True, "webhook_url": slack.url(), "throttle": 0}})
        async with AsyncTaskScheduler(config, clock=clock) as scheduler:  # plugins found through entry points
            await scheduler.add_task(Task("nightly", broken, every="1m"))
            await scheduler.start()
            for _ in range(3):
                clock.advance(30)
                await clock.settle()
            await scheduler.stop()

    asyncio.run(main())
    assert headers(slack.payloads) == [":red_circle: nightly failed"]
    assert "LookupError: no such partition" in slack.payloads[0]["text"]


def test_two_schedulers_in_one_process_alert_with_their_own_settings(slack: FakeSlack):
    clock = FakeClock()
    plugin = SlackPlugin(host="web-1")
    plugins = PluginManager(entry_points=False, plugins=[
        ("memory", sts_memory.plugin), ("triggers", sts_triggers.plugin), ("tasks", sts_tasks.plugin),
        ("slack", plugin),
    ])

    async def broken() -> None:
        raise RuntimeError("down")

    def config(name: str) -> Config:
        return Config({"logging": {"loglevel": "WARNING"}, "slack": {"enabled": True, "webhook_url": slack.url(name)}})

    async def main() -> None:
        first = AsyncTaskScheduler(config("first"), clock=clock, plugins=plugins)
        second = AsyncTaskScheduler(config("second"), clock=clock, plugins=plugins)
        for name, scheduler in (("a", first), ("b", second)):
            await scheduler.add_task(Task(name, broken, every="1m"))
            await scheduler.start()
        clock.advance(61)
        await clock.settle()
        for scheduler in (first, second):
            await scheduler.wait_idle()
            await scheduler.stop()

    asyncio.run(main())
    assert headers(slack.payloads_to("first")) == [":red_circle: a failed"]
    assert headers(slack.payloads_to("second")) == [":red_circle: b failed"]


def test_a_scheduler_that_is_never_started_leaves_no_instance_behind(slack: FakeSlack, caplog):
    plugin = SlackPlugin(host="web-1")

    async def job() -> None:
        pass

    async def main() -> str:
        async with build({"webhook_url": slack.url()}, plugin) as scheduler:  # no start()
            await scheduler.add_task(Task("once", job, every="1m"))
            await scheduler.remove_task("once")
            return scheduler.id

    with caplog.at_level(logging.DEBUG, logger="sts.slack"):
        scheduler_id = asyncio.run(main())
    assert plugin.instance(scheduler_id) is None and plugin._instances == {}
    assert f"slack: task.added of scheduler {scheduler_id} ignored: the scheduler is not running" in caplog.text


def test_events_after_the_stop_build_no_new_instance(slack: FakeSlack):
    clock = FakeClock()
    plugin = SlackPlugin(host="web-1")

    async def main() -> AsyncTaskScheduler:
        async with build({"webhook_url": slack.url(), "throttle": 0}, plugin, clock) as scheduler:
            await scheduler.start()
            await scheduler.stop()
        return scheduler

    scheduler = asyncio.run(main())
    assert plugin._instances == {}
    plugin.handle_event(ev.RunFailed(T0, make_run(), make_task()), scheduler)  # a late event
    assert plugin._instances == {} and slack.payloads == []


def test_a_started_scheduler_logs_one_line_saying_where_alerts_go_without_the_secret_path(slack: FakeSlack, caplog):
    plugin = SlackPlugin(host="web-1")
    section = {"webhook_url": slack.url(), "webhooks": {"ops": slack.url("ops")}, "alert_on": {"retry": True}}

    async def main() -> None:
        async with build(section, plugin) as scheduler:
            await scheduler.start()
            await scheduler.stop()

    with caplog.at_level(logging.INFO, logger="sts.slack"):
        asyncio.run(main())
    host = slack.url().split("/services/")[0]
    lines = [record.getMessage() for record in caplog.records if record.name == "sts.slack"]
    assert lines == [
        f"Slack alerts to webhook default {host}/***, ops {host}/*** on failure, retry, recovered (throttle 10m00s)"
    ]
    assert "secret-token" not in caplog.text and "/services/" not in caplog.text


def test_two_schedulers_in_one_process_each_check_and_send_alerts_with_their_own_slack_config():
    """The entry point names the class, so each scheduler's plugin manager has its own plugin:
    a task's ``alerts.slack.webhook`` is checked against that scheduler's webhooks, whichever
    scheduler was configured last, and its alerts reach that scheduler's Slack."""
    clock = FakeClock()

    async def broken() -> None:
        raise RuntimeError("disk full")

    def section(slack: FakeSlack, route: str) -> dict[str, Any]:
        return {"webhook_url": slack.url(), "webhooks": {route: slack.url(route)}, "throttle": 0}

    async def main(ops_slack: FakeSlack, data_slack: FakeSlack) -> dict[str, list[str]]:
        # A class, as the entry point gives it: each manager builds its own instance.
        ops = build(section(ops_slack, "ops"), SlackPlugin, clock)  # type: ignore[arg-type]
        data = build(section(data_slack, "data"), SlackPlugin, clock)  # type: ignore[arg-type]
        rejected: dict[str, list[str]] = {}
        async with ops, data:
            for scheduler, own, other in ((ops, "ops", "data"), (data, "data", "ops")):
                with pytest.raises(TaskValidationError) as caught:
                    await scheduler.add_task(Task("stray", broken, every="1m", alerts={"slack": {"webhook": other}}))
                rejected[own] = [problem.key_path for problem in caught.value.problems]
                await scheduler.add_task(Task(f"{own}-job", broken, every="1m", alerts={"slack": {"webhook": own}}))
                await scheduler.start()
            clock.advance(60)
            await clock.settle()
            ops_slack.wait_for(1)
            data_slack.wait_for(1)
            await ops.stop()
            await data.stop()
        return rejected

    with FakeSlack() as ops_slack, FakeSlack() as data_slack:
        rejected = asyncio.run(main(ops_slack, data_slack))
    assert rejected == {"ops": ["stray.alerts.slack.webhook"], "data": ["stray.alerts.slack.webhook"]}
    assert headers(ops_slack.payloads_to("ops")) == [":red_circle: ops-job failed"]
    assert headers(data_slack.payloads_to("data")) == [":red_circle: data-job failed"]
    assert len(ops_slack.payloads) == len(data_slack.payloads) == 1
