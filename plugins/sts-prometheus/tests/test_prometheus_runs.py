"""Run metrics, end to end: a real scheduler on the memory backend and a fake clock, a known
sequence of runs, and ``/metrics`` scraped over HTTP."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import pytest
from sts_prometheus_helpers import Scrape, scrape_until

from sts.plugin import Run, RunState, Task
from sts_prometheus.plugin import exporter_for


class Flaky:
    """A task function failing every call with a ``ConnectionError``. (Task functions here are
    coroutines: they run on the loop, so ``FakeClock.settle`` waits for them, unlike threads.)"""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        raise ConnectionError(f"secret failure number {self.calls}")


async def never_finishes() -> None:
    await asyncio.sleep(30)


async def succeed() -> str:
    return "done"


async def run_the_sequence(scheduler: Any, clock: Any) -> list[Run]:
    """flaky fails 3 times (2 retries), so child is skipped; slow times out; then ``ok`` (every
    10s) runs twice: first 5s late (the clock jumps 15s at once), then on time."""
    await scheduler.add_task(Task("flaky", Flaky(), retries=2, retry_delay="1s"))
    await scheduler.add_task(Task("child", succeed, parent_tasks=["flaky"]))
    await scheduler.add_task(Task("slow", never_finishes, timeout=0.02))
    await scheduler.start()
    await clock.advance_settled(3)  # flaky's retries at +1s and +2s
    await scheduler.wait_idle()  # slow times out in real time
    await scheduler.add_task(Task("ok", succeed, every="10s"))  # first fire 10s from now
    clock.advance(15)
    await clock.settle()
    await scheduler.wait_idle()
    await clock.advance_settled(10)  # the next fire, started exactly on time
    await scheduler.wait_idle()
    return await scheduler.runs(limit=1000)


async def scrape_after_the_sequence(scheduler: Any, clock: Any) -> tuple[Scrape, list[Run]]:
    """Run the sequence, then scrape once every outcome has reached the metrics."""
    async with scheduler:
        runs = await run_the_sequence(scheduler, clock)
        scrape = await scrape_until(exporter_for(scheduler).url, lambda s: runs_total(s) == expected_runs_total())
        await scheduler.stop()
    return scrape, runs


def expected_runs_total() -> dict[tuple[str, str], float]:
    return {
        ("flaky", "retrying"): 2,
        ("flaky", "failed"): 1,
        ("child", "skipped"): 1,
        ("slow", "timed_out"): 1,
        ("ok", "succeeded"): 2,
    }


def runs_total(scrape: Scrape) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["task"], dict(labels)["state"]): value
        for labels, value in scrape.counted("sts_runs_total").items()
    }


def test_every_final_outcome_is_counted_by_task_and_state(make_scheduler, clock) -> None:
    scrape, runs = asyncio.run(scrape_after_the_sequence(make_scheduler(), clock))
    assert sorted((r.task_name, r.state.value) for r in runs) == sorted(
        key for key, count in expected_runs_total().items() for _ in range(int(count))
    )
    assert scrape.value("sts_run_retries_total", task="flaky") == 2
    assert scrape.counted("sts_run_retries_total").keys() == {frozenset({("task", "flaky")})}
    assert scrape.value("sts_run_errors_total", task="flaky", error_type="ConnectionError") == 3
    assert scrape.value("sts_run_errors_total", task="slow", error_type="TimeoutError") == 1
    assert len(scrape.labelled("sts_run_errors_total")) == 2


def test_histograms_count_executed_attempts_and_the_lateness_of_first_attempts(make_scheduler, clock) -> None:
    scrape, runs = asyncio.run(scrape_after_the_sequence(make_scheduler(), clock))
    durations = {name: scrape.value("sts_run_duration_seconds_count", task=name) for name in ("flaky", "slow", "ok")}
    assert durations == {"flaky": 3, "slow": 1, "ok": 2}  # every attempt that executed
    assert scrape.value("sts_run_duration_seconds_count", task="child") is None  # skipped: never executed
    lateness = {
        name: scrape.value("sts_run_lateness_seconds_count", task=name) for name in ("flaky", "slow", "ok", "child")
    }
    assert lateness == {"flaky": 1, "slow": 1, "ok": 2, "child": None}  # first attempts that started
    ok_runs = [r for r in runs if r.task_name == "ok"]
    late = sorted((r.started_at - r.scheduled_for).total_seconds() for r in ok_runs)
    assert late == [0.0, 5.0]
    assert scrape.value("sts_run_lateness_seconds_sum", task="ok") == 5.0
    assert scrape.value("sts_run_lateness_seconds_bucket", task="ok", le="0.001") == 1
    assert scrape.value("sts_run_lateness_seconds_bucket", task="ok", le="2.5") == 1
    assert scrape.value("sts_run_lateness_seconds_bucket", task="ok", le="5.0") == 2
    assert scrape.value("sts_run_lateness_seconds_bucket", task="ok", le="+Inf") == 2


def test_last_success_time_is_the_end_of_the_newest_successful_run(make_scheduler, clock) -> None:
    scrape, runs = asyncio.run(scrape_after_the_sequence(make_scheduler(), clock))
    newest = max(r.ended_at for r in runs if r.task_name == "ok" and r.state is RunState.SUCCEEDED)
    assert scrape.value("sts_task_last_success_timestamp_seconds", task="ok") == newest.timestamp()
    assert set(scrape.labelled("sts_task_last_success_timestamp_seconds")) == {frozenset({("task", "ok")})}


def test_no_run_id_or_error_message_appears_in_the_metrics(make_scheduler, clock) -> None:
    scrape, runs = asyncio.run(scrape_after_the_sequence(make_scheduler(), clock))
    assert len(runs) == 7
    for run in runs:
        assert run.id not in scrape.text
        assert run.fire_id not in scrape.text
    assert "secret failure" not in scrape.text
    allowed_labels = {"task", "state", "error_type", "policy", "broker", "plugin", "loop", "le",
                      "scheduler_id", "roles", "backend", "version"}
    for _, labels in scrape.samples:
        assert {name for name, _ in labels} <= allowed_labels


def test_the_error_type_label_is_capped(make_scheduler, clock) -> None:
    from sts_prometheus.metrics import MAX_ERROR_TYPES

    def raiser(index: int):
        async def fail() -> None:
            raise type(f"Error{index}", (Exception,), {})("boom")

        return fail

    async def main() -> Scrape:
        async with make_scheduler() as scheduler:
            count = MAX_ERROR_TYPES + 5
            for index in range(count):
                await scheduler.add_task(Task(f"t{index}", raiser(index)))
            await scheduler.start()
            await clock.settle()
            await scheduler.wait_idle()
            result = await scrape_until(
                exporter_for(scheduler).url,
                lambda s: sum(s.labelled("sts_run_errors_total").values()) == count,
            )
            await scheduler.stop()
        return result

    scrape = asyncio.run(main())
    types = {dict(labels)["error_type"] for labels in scrape.labelled("sts_run_errors_total")}
    assert len(types) == MAX_ERROR_TYPES + 1 and "other" in types


NO_PROMTOOL = "promtool is not installed (Debian: apt install prometheus)"


@pytest.mark.skipif(shutil.which("promtool") is None, reason=NO_PROMTOOL)
def test_promtool_finds_nothing_wrong_with_the_scraped_metrics(make_scheduler, clock) -> None:
    scrape, _ = asyncio.run(scrape_after_the_sequence(make_scheduler(process_metrics=True), clock))
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=scrape.text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", checked.stdout + checked.stderr


def test_an_outcome_announced_again_after_a_lost_worker_is_not_counted_twice() -> None:
    from datetime import UTC, datetime

    from sts.plugin import Health
    from sts.plugin import events as ev
    from sts_prometheus.config import Settings
    from sts_prometheus.listener import MetricsListener
    from sts_prometheus.metrics import build_metrics

    health = Health(running=True, scheduler_id="s", roles=("worker",), runs_in_flight=0, beats={},
                    backend_unavailable=False)
    metrics = build_metrics(Settings(process_metrics=False), health=lambda: health, backend="memory", version="0")
    listener = MetricsListener(metrics)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    run = Run(id="r", task_name="t", task_version=1, scheduled_for=now, state=RunState.SUCCEEDED,
              started_at=now, ended_at=now, duration=0.5)
    listener.handle(ev.RunSucceeded(now, run))
    listener.handle(ev.RunSucceeded(now, run, None, True))  # the next worker completes it again
    assert metrics.registry.get_sample_value("sts_runs_total", {"task": "t", "state": "succeeded"}) == 1


def test_a_known_task_has_its_run_series_at_zero_before_it_first_runs(make_scheduler, clock) -> None:
    """A counter series that first appears at 1 shows no increase() in Prometheus: the first
    failure of a task would never alert."""

    async def main() -> Scrape:
        async with make_scheduler() as scheduler:
            await scheduler.add_task(Task("nightly", succeed, cron="0 3 * * *"))
            await scheduler.start()
            result = await scrape_until(exporter_for(scheduler).url,
                                        lambda s: s.value("sts_runs_total", task="nightly", state="failed") == 0)
            await scheduler.stop()
        return result

    result = asyncio.run(main())
    for state in ("succeeded", "failed", "timed_out", "retrying", "poison"):
        assert result.value("sts_runs_total", task="nightly", state=state) == 0
    assert result.value("sts_run_retries_total", task="nightly") == 0
