"""A stored task that a scheduler process cannot load (its function or trigger kind is missing in
that process) stays scheduled: its runs are recorded failed with the reason, health() names it,
and it runs again once the process can load it. Firing never needs the function."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from procs import StsProcess

from sts.config import Config
from sts.plugin import Option, PluginManager, RunState, hookimpl, plugin_added
from sts.scheduler import AsyncTaskScheduler
from sts.task import Task
from sts_core.testing import until

calls: list[str] = []


def tick() -> str:
    calls.append("tick")
    return "ok"


def config(url: str, **extra: object) -> Config:
    return Config({
        "scheduler_backend": "redis",
        "redis": {"url": url, "key_prefix": "unl", "lease_time": "5s", "poll_interval": "1s"},
        "scheduler": {"shutdown_grace": "1s"},
        **extra,
    })


def test_a_task_whose_function_this_process_cannot_load_stays_scheduled_and_its_runs_fail_clearly(
    redis_url: str,
) -> None:
    async def main() -> None:
        calls.clear()
        adder = AsyncTaskScheduler(config(redis_url))
        adder.register_function("tick", tick)
        await adder.add_task(Task("beat", function="tick", every="1s"))
        await adder.close()
        runner = AsyncTaskScheduler(config(redis_url))  # has no function registered as "tick"
        await runner.start()
        try:
            failed = await until_run(runner, "beat", RunState.FAILED)
            assert failed.error_type == "TaskLoadError"
            assert "no function registered as 'tick'" in (failed.error_message or "")
            assert await runner.next_fire_time("beat") is not None, "the task was unscheduled"
            assert "beat" in runner.health().task_problems
            assert not calls
            # Once the process can load it, it runs again, and the problem is gone.
            runner.register_function("tick", tick)
            succeeded = await until_run(runner, "beat", RunState.SUCCEEDED)
            assert succeeded.task_version == 1
            assert calls
            assert "beat" not in runner.health().task_problems
        finally:
            await runner.stop()

    asyncio.run(main())


def test_a_task_whose_trigger_kind_this_process_lacks_stays_due_and_each_fire_records_why(redis_url: str) -> None:
    async def main() -> None:
        adder = AsyncTaskScheduler(config(redis_url))
        adder.register_function("tick", tick)
        await adder.add_task(Task("beat", function="tick", every="1s"))
        await adder.close()
        runner = AsyncTaskScheduler(config(redis_url, plugins={"disable": ["triggers"]}))
        runner.register_function("tick", tick)
        await runner.start()
        try:
            failed = await until_run(runner, "beat", RunState.FAILED)
            assert failed.error_type == "TaskLoadError"
            assert (failed.error_message or "").startswith("cannot be fired: its trigger cannot be built here")
            next_fire = await runner.next_fire_time("beat")
            assert next_fire is not None, "the task was unscheduled"
            assert next_fire > datetime.now(UTC) + timedelta(seconds=30), "it is retried later, not at once"
            assert runner.health().task_problems["beat"].startswith("its trigger cannot be built here")
        finally:
            await runner.stop()

    asyncio.run(main())


async def until_run(scheduler: AsyncTaskScheduler, name: str, state: RunState):
    found = []

    async def check() -> bool:
        found[:] = await scheduler.runs(name=name, state=state, limit=1)
        return bool(found)

    await until(check, timeout=10, what=f"a {state.value} run of {name}")
    return found[0]


def test_sts_scheduler_started_where_the_function_cannot_be_imported_still_fires_it(
    redis_url: str, tmp_path: Path
) -> None:
    """The issue's case with real processes: `beat` (function `jobs:tick`) is stored by the
    application, `sts worker` runs from the application's directory and `sts scheduler` from a
    directory where `jobs:tick` is not importable. The ledger the function writes shows that the
    task keeps firing."""
    app, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    app.mkdir()
    elsewhere.mkdir()
    ledger = tmp_path / "ledger.txt"
    (app / "jobs.py").write_text(
        "import os\n\ndef tick():\n    with open(os.environ['LEDGER'], 'a') as f:\n        f.write('tick\\n')\n"
    )
    (app / "tasks.yaml").write_text("tasks:\n  - name: beat\n    function: jobs:tick\n    every: 1s\n")
    config_file = tmp_path / "sts.yaml"
    config_file.write_text(
        f"scheduler_backend: redis\nredis:\n  url: {redis_url}\n  key_prefix: unlp\n  lease_time: 5s\n"
        "scheduler:\n  shutdown_grace: 1s\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"LEDGER": str(ledger)}
    if os.environ.get("PYTHONPATH"):  # a development checkout's sources, not the application's
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    store = StsProcess("store", ["--config", str(config_file), "scheduler", "tasks.yaml", "--for", "0.1"], cwd=app,
                       env=env, log_path=tmp_path / "store.log")
    worker = StsProcess("worker", ["--config", str(config_file), "worker"], cwd=app, env=env,
                        log_path=tmp_path / "worker.log")
    scheduler = StsProcess("scheduler", ["--config", str(config_file), "scheduler"], cwd=elsewhere, env=env,
                           log_path=tmp_path / "scheduler.log")
    assert store.start().wait(20) == 0, store.tail()  # the application stores its tasks
    worker.start()
    scheduler.start()
    try:
        deadline = time.monotonic() + 20
        while (not ledger.exists() or ledger.read_text().count("tick") < 3) and time.monotonic() < deadline:
            time.sleep(0.1)
        ticks = ledger.read_text().count("tick") if ledger.exists() else 0
        assert ticks >= 3, (f"beat ran {ticks} time(s)\n--- scheduler:\n{scheduler.tail()}\n"
                            f"--- worker:\n{worker.tail()}")
        assert "cannot be loaded in this process" in scheduler.log_text()
    finally:
        for process in (scheduler, worker):
            process.send(signal.SIGTERM)
        for process in (scheduler, worker):
            if process.wait(10) is None:
                process.kill()


def test_tasks_sharing_a_module_that_no_longer_imports_report_its_error_once_with_its_line(
    redis_url: str, tmp_path: Path, monkeypatch, caplog
) -> None:
    module = tmp_path / "shared_jobs_mod.py"
    module.write_text("def job():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    async def main() -> None:
        adder = AsyncTaskScheduler(config(redis_url))
        await adder.add_tasks([Task(f"t{i}", function="shared_jobs_mod:job", every="1h") for i in range(8)])
        await adder.close()
        monkeypatch.delitem(sys.modules, "shared_jobs_mod")
        module.write_text("import os\nraise RuntimeError('deploy half done')\n")
        loader = AsyncTaskScheduler(config(redis_url))
        await loader.open()
        try:
            assert sorted(loader.health().task_problems) == [f"t{i}" for i in range(8)]
        finally:
            await loader.close()

    with caplog.at_level(logging.WARNING, logger="sts.engine"):
        asyncio.run(main())
    full = [r.getMessage() for r in caplog.records if "deploy half done" in r.getMessage()]
    assert len(full) == 1, full
    assert "shared_jobs_mod.py:2" in full[0]


class _NotifyType:
    def validate(self, task: Task, resolve_function: object) -> list[object]:
        return []

    def prepare(self, task: Task, resolve_function: object) -> str:
        return task.channel

    async def execute(self, context: object) -> None:
        return None


class _Notify:
    """A third party's task type with its own option, installed where the task is added only."""

    @hookimpl
    def register_task_types(self, register) -> None:
        register("notify", _NotifyType(), options=[Option("channel", str)])


def test_a_stored_task_with_an_option_no_plugin_here_declares_loads_and_stays_scheduled(redis_url: str) -> None:
    async def main() -> None:
        plugin = _Notify()
        with plugin_added("notify", plugin):
            adder = AsyncTaskScheduler(config(redis_url), plugins=PluginManager(plugins=[("notify", plugin)]))
            await adder.add_task(Task("page", type="notify", channel="#ops", every="1h"))
            await adder.close()
        runner = AsyncTaskScheduler(config(redis_url))
        await runner.start()
        try:
            task = await runner.get_task("page")
            assert task is not None and task.channel == "#ops" and task.undeclared_options == ["channel"]
            assert runner.health().task_problems["page"].startswith("cannot be loaded in this process")
            assert await runner.next_fire_time("page") is not None
        finally:
            await runner.stop()

    asyncio.run(main())
