"""The engine on the Redis backend, in one process: resume after a restart, separate scheduler
and worker roles, task changes made by another process, dependencies, max_instances across
workers, undeliverable queue entries, and the errors a user sees for a bad server."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sts.config import Config
from sts.plugin import BackendError, BackendUnavailableError, Run, RunState, TaskValidationError, new_run_id
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task, current_run
from sts_core.testing import until
from sts_redis.backend import build_backend

calls: list[tuple[str, str, float]] = []


def record(label: str = "") -> None:
    run = current_run()
    calls.append((run.task_name if run else "?", label, time.monotonic()))


async def slow(seconds: float) -> None:
    run = current_run()
    calls.append((run.task_name if run else "?", "start", time.monotonic()))
    await asyncio.sleep(seconds)
    calls.append((run.task_name if run else "?", "end", time.monotonic()))


def config(url: str, prefix: str = "e2e", **sections: Any) -> Config:
    data: dict[str, Any] = {
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": prefix, "lease_time": "5s", "poll_interval": "1s"},
        "scheduler": {"shutdown_grace": "1s"},
    }
    data.update(sections)
    return Config(data)


def scheduler(url: str, **sections: Any) -> AsyncTaskScheduler:
    sched = AsyncTaskScheduler(config(url, **sections))
    sched.register_function("record", record)
    sched.register_function("slow", slow)
    return sched



@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


def test_tasks_next_fires_and_history_survive_a_restart_of_every_process(redis_url: str) -> None:
    async def main() -> None:
        first = scheduler(redis_url)
        await first.add_task(Task("tick", function="record", every=0.2))
        await first.start()
        await until(lambda: len(calls) >= 2, what="two ticks")
        await first.stop()
        before = [run.id for run in await first.runs("tick")]
        next_fire = await first.next_fire_time("tick")
        calls.clear()

        second = scheduler(redis_url)  # no add_task: everything comes from Redis
        await second.open()
        assert [task.name for task in await second.list_tasks()] == ["tick"]
        assert await second.next_fire_time("tick") == next_fire
        await second.start()
        await until(lambda: len(calls) >= 2, what="ticks after the restart")
        await second.stop()
        after = [run.id for run in await second.runs("tick")]
        assert set(before) <= set(after) and len(after) > len(before)

    asyncio.run(main())


def test_a_task_added_by_a_process_that_does_not_run_is_fired_by_the_scheduler_within_a_second(
    redis_url: str,
) -> None:
    async def main() -> None:
        fires_only = scheduler(redis_url)
        runs_only = scheduler(redis_url)
        api_like = scheduler(redis_url)
        await fires_only.start(worker=False)
        await runs_only.start(scheduler=False)
        try:
            added = time.monotonic()
            await api_like.add_task(Task("remote", function="record", every=0.3))
            await until(lambda: calls, timeout=3, what="the first run of a task added elsewhere")
            assert calls[0][2] - added < 1.0
            await api_like.add_task(Task("remote", function="record", every=0.3, kwargs={"label": "v2"}),
                                    replace=True)
            await until(lambda: any(label == "v2" for _, label, _ in calls), timeout=3, what="version 2")
            await api_like.remove_task("remote")
            await asyncio.sleep(0.2)
            settled = len(calls)
            await asyncio.sleep(0.8)
            assert len(calls) <= settled + 1
            runs = await api_like.runs("remote", limit=1000)
            assert {run.task_version for run in runs} >= {1, 2}
            assert all(run.worker and run.worker.endswith(runs_only.id) for run in runs if run.started_at)
        finally:
            await fires_only.stop()
            await runs_only.stop()
            await api_like.close()

    asyncio.run(main())


def test_a_parent_stored_by_another_process_cannot_be_removed_while_a_child_names_it(redis_url: str) -> None:
    async def main() -> None:
        writer, api_like = scheduler(redis_url), scheduler(redis_url)
        try:
            await writer.add_tasks([Task("extract", function="record", every=60),
                                    Task("load", function="record", parent_tasks=["extract"])])
            with pytest.raises(TaskValidationError, match="is a parent of load"):
                await api_like.delete_task("extract")  # its own plans know neither task
            assert await writer.get_task("extract") is not None
        finally:
            await writer.close()
            await api_like.close()

    asyncio.run(main())


def test_two_schedulers_fire_each_fire_exactly_once(redis_url: str) -> None:
    async def main() -> None:
        one, two, worker = scheduler(redis_url), scheduler(redis_url), scheduler(redis_url)
        await one.add_tasks([Task(f"t{i}", function="record", every=0.1) for i in range(10)])
        await one.start(worker=False)
        await two.start(worker=False)
        await worker.start(scheduler=False)
        await asyncio.sleep(2.0)
        await one.stop()
        await two.stop()
        await worker.stop()
        runs = await worker.runs(limit=100_000)
        fires = [run.fire_id for run in runs if run.state is RunState.SUCCEEDED]
        assert len(fires) >= 10 * 15
        assert len(fires) == len(set(fires)), "a fire ran twice"
        assert len(calls) == len(fires)

    asyncio.run(main())


def test_a_child_starts_once_when_its_parents_succeed_on_different_workers(redis_url: str) -> None:
    async def main() -> None:
        fires = scheduler(redis_url)
        workers = [scheduler(redis_url) for _ in range(2)]
        await fires.add_tasks([
            Task("a", function="record", every=0.5),
            Task("b", function="record", every=0.5),
            Task("child", function="record", parent_tasks=["a", "b"]),
        ])
        await fires.start(worker=False)
        for worker in workers:
            await worker.start(scheduler=False)
        await until(lambda: sum(name == "child" for name, _, _ in calls) >= 3, what="three child runs")
        await fires.stop()
        for worker in workers:
            await worker.stop()
        parents = sum(name == "a" for name, _, _ in calls)
        children = sum(name == "child" for name, _, _ in calls)
        assert children <= parents  # one child run per round of both parents, never two

    asyncio.run(main())


def test_max_instances_holds_across_workers(redis_url: str) -> None:
    async def main() -> None:
        fires = scheduler(redis_url)
        workers = [scheduler(redis_url) for _ in range(2)]
        await fires.add_task(Task("exclusive", function="slow", kwargs={"seconds": 0.35}, every=0.1,
                                  max_instances=1))
        await fires.start(worker=False)
        for worker in workers:
            await worker.start(scheduler=False)
        await asyncio.sleep(2.0)
        await fires.stop()
        for worker in workers:
            await worker.stop()
        running = 0
        for _, label, _ in sorted(calls, key=lambda call: call[2]):
            running += 1 if label == "start" else -1
            assert running <= 1, "two instances ran at once"
        skipped = await fires.runs("exclusive", state="skipped", limit=1000)
        assert skipped and "max_instances=1" in skipped[0].reason
        assert sum(label == "end" for _, label, _ in calls) >= 3

    asyncio.run(main())


def test_manual_fires_beyond_max_instances_queue_and_run_one_after_another_across_workers(redis_url: str) -> None:
    async def main() -> None:
        api_like = scheduler(redis_url)
        workers = [scheduler(redis_url) for _ in range(2)]
        await api_like.add_task(Task("exclusive", function="slow", kwargs={"seconds": 0.4}, every="1h",
                                     max_instances=1))
        for worker in workers:
            await worker.start(scheduler=False)
        try:
            fired = [await api_like.fire_now("exclusive") for _ in range(3)]
            assert [run.waits_for_instance for run in fired] == [False, True, True]

            async def all_ran() -> bool:
                done = await api_like.runs("exclusive", state="succeeded", limit=10)
                return {run.id for run in done} == {run.id for run in fired}  # under the ids fire_now gave

            await until(all_ran, timeout=15, what="the three manual fires to run")
        finally:
            for worker in workers:
                await worker.stop()
            await api_like.close()
        running = 0
        for _, label, _ in sorted(calls, key=lambda call: call[2]):
            running += 1 if label == "start" else -1
            assert running <= 1, "two instances ran at once"
        assert [label for _, label, _ in calls].count("start") == 3

    asyncio.run(main())


def test_undeliverable_queue_entries_are_dead_lettered_and_the_worker_stays_up(redis_url: str) -> None:
    import redis

    async def main() -> None:
        worker = scheduler(redis_url)
        await worker.start()
        raw = redis.Redis.from_url(redis_url)
        unknown = Run(id=new_run_id(), task_name="no-such-task", task_version=1,
                      scheduled_for=worker.clock.now(), fire_id="x@1")
        entries = {
            "bad-json": b"{not json",
            "pickled": pickle.dumps({"task_name": "evil"}),
            "not-a-run": json.dumps({"hello": "world"}).encode(),
            unknown.id: json.dumps(unknown.to_dict()).encode(),
        }
        for run_id, payload in entries.items():
            raw.hset("e2e:q:msg", run_id, payload)
            raw.rpush("e2e:q:ready", run_id)
        raw.rpush("e2e:q:ready", "id-without-message")
        raw.publish("e2e:queue", "ready")
        await worker.add_task(Task("fine", function="record"))
        await until(lambda: any(name == "fine" for name, _, _ in calls), what="a normal run after the garbage")
        dead = await worker.backend.broker.dead_letters()
        await until(lambda: len(raw.lrange("e2e:q:dead", 0, -1)) == 5, what="five dead letters")
        dead = await worker.backend.broker.dead_letters()
        reasons = {entry["id"]: entry["reason"] for entry in dead}
        assert "not valid JSON" in reasons["bad-json"]
        assert "never loaded" in reasons["pickled"] or "not valid JSON" in reasons["pickled"]
        assert "not a valid run" in reasons["not-a-run"]
        assert "unknown task 'no-such-task'" in reasons[unknown.id]
        assert "no message" in reasons["id-without-message"]
        poison = await worker.runs("no-such-task", state="poison")
        assert len(poison) == 1
        assert raw.hlen("e2e:q:msg") == 0 and raw.llen("e2e:q:ready") == 0
        await worker.stop()

    asyncio.run(main())


def test_an_unreachable_server_a_wrong_password_and_a_bad_url_are_clear_errors(
    redis_server_factory: Any,
) -> None:
    guarded = redis_server_factory(password="s3cret-pw")

    async def open_with(url: str) -> str:
        sched = AsyncTaskScheduler(config(url, redis={"url": url, "connect_timeout": "1s"}))
        with pytest.raises(BackendUnavailableError) as caught:
            await sched.open()
        return str(caught.value)

    async def main() -> None:
        message = await open_with("redis://127.0.0.1:1/0")
        assert "redis://127.0.0.1:1/0 is unreachable" in message
        wrong = f"redis://:wrong-pw@127.0.0.1:{guarded.port}/0"
        message = await open_with(wrong)
        assert "refused" in message and "wrong-pw" not in message and "***" in message

    asyncio.run(main())
    bad = AsyncTaskScheduler  # a bad URL is a config error before anything connects
    with pytest.raises(Exception, match=r"redis\.url: expected a URL starting redis://"):
        bad(config("http://127.0.0.1:6379/0", redis={"url": "http://127.0.0.1:6379/0"}))


def test_sts_run_reports_an_unreachable_redis_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "sts.yaml").write_text(
        "scheduler_backend: redis\nredis:\n  url: redis://:hunter2@127.0.0.1:1/0\n  connect_timeout: 1s\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from sts_cli import main; sys.exit(main())",
         "run", "--config", "sts.yaml", "--for", "1s"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "sts: error: Redis at redis://:***@127.0.0.1:1/0 is unreachable" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_a_full_redis_refuses_the_write_with_a_clear_error(redis_server_factory: Any) -> None:
    small = redis_server_factory(maxmemory="2mb")

    async def main() -> None:
        from sts.plugin import SystemClock

        backend = build_backend(config(small.url), SystemClock())
        await backend.store.open()
        await backend.broker.open()
        try:
            with pytest.raises(BackendError, match="maxmemory"):
                for i in range(10_000):
                    run = Run(id=f"r{i}", task_name="big", task_version=1, scheduled_for=SystemClock().now(),
                              output="x" * 2000)
                    await backend.broker.enqueue(run)
        finally:
            await backend.broker.close()
            await backend.store.close()

    asyncio.run(main())


def test_a_next_fire_moved_earlier_by_another_process_wakes_the_sleeping_scheduler(redis_url: str) -> None:
    async def main() -> None:
        from datetime import UTC, datetime

        running = scheduler(redis_url)
        other = scheduler(redis_url)
        await running.add_task(Task("hourly", function="record", every="1h"))
        await running.start()
        try:
            await asyncio.sleep(0.3)  # the scheduler now sleeps towards the next fire, an hour away
            moved = time.monotonic()
            await other.open()
            await other.backend.store.set_next_fire("hourly", datetime.now(UTC))
            await until(lambda: calls, timeout=3, what="the fire moved to now")
            assert calls[0][2] - moved < 1.0
        finally:
            await running.stop()
            await other.close()

    asyncio.run(main())


def bad_name() -> list[str]:
    return ["report-\udcff.csv"]  # what os.fsdecode gives for b"report-\xff.csv"


def test_a_result_redis_cannot_encode_is_recorded_as_its_repr(redis_url: str) -> None:
    async def main() -> Run:
        sched = scheduler(redis_url)
        sched.register_function("bad_name", bad_name)
        async with sched:
            return await sched.run(Task("surrogate", function="bad_name"))

    run = asyncio.run(main())
    assert run.state is RunState.SUCCEEDED
    assert run.result == repr(bad_name())
