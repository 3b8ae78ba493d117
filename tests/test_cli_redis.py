"""The ``sts`` task and run commands against a shared Redis store (a real ``redis-server``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from cli_helpers import clean_environment, read_until, run_sts, sts_command

from sts_core.blocking import TaskScheduler
from sts_core.config import Config
from sts_core.task import Task

JOBS = '''\
def greet(name="world"):
    print(f"hello, {name}")
    return name


def fail():
    print("about to fail")
    raise ValueError("boom")
'''


@pytest.fixture
def workdir(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "redis_jobs.py").write_text(JOBS)
    (tmp_path / "sts.yaml").write_text(f"scheduler_backend: redis\nredis:\n  url: {redis_url}\n"
                                       "logging:\n  loglevel: INFO\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the tasks added from this process import redis_jobs too
    return tmp_path


def sts(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_sts(*args, "--config", "sts.yaml", cwd=workdir)


def _scheduler(workdir: Path) -> TaskScheduler:
    return TaskScheduler(config=Config.from_file(str(workdir / "sts.yaml")))


def test_tasks_on_an_empty_redis_store_names_redis_and_does_not_blame_the_memory_backend(workdir):
    result = sts(workdir, "tasks")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "No tasks stored in the redis backend."
    assert json.loads(sts(workdir, "tasks", "--json").stdout) == []


def test_runs_run_id_shows_a_failed_runs_error_traceback_output_and_timings(workdir):
    (workdir / "fail.yaml").write_text("tasks:\n  - name: doomed\n    function: redis_jobs:fail\n")
    ran = sts(workdir, "run", "fail.yaml", "--for", "2s")
    assert ran.returncode == 0, ran.stderr

    listed = sts(workdir, "runs", "--failed", "--json")
    assert listed.returncode == 0, listed.stderr
    (record,) = json.loads(listed.stdout)
    assert (record["task_name"], record["state"], record["error_type"]) == ("doomed", "failed", "ValueError")

    shown = sts(workdir, "runs", record["id"])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert f"run        {record['id']}" in text
    assert "state      failed" in text and "error      ValueError: boom" in text
    assert "duration   0." in text and "started    20" in text and "Z\n" in text
    assert "traceback:\n  Traceback (most recent call last):" in text and 'raise ValueError("boom")' in text
    assert "output:\n  about to fail" in text
    assert json.loads(sts(workdir, "runs", record["id"], "--json").stdout) == record

    tasks = sts(workdir, "tasks")  # a failing task shows as such in the task list
    assert "LAST RUN" in tasks.stdout and "failed: ValueError" in tasks.stdout
    (listed_task,) = json.loads(sts(workdir, "tasks", "--json").stdout)
    assert listed_task["last_run"]["error_type"] == "ValueError"


def test_pause_resume_next_trigger_and_remove_act_on_the_shared_store(workdir):
    with _scheduler(workdir) as scheduler:
        scheduler.add_task(Task("beat", function="redis_jobs:greet", every="1h"))

    paused = sts(workdir, "pause", "beat")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.startswith("paused beat (version 2)")
    assert "already paused" in sts(workdir, "pause", "beat").stdout
    (listed,) = json.loads(sts(workdir, "tasks", "--json").stdout)
    assert (listed["state"], listed["next_fire"], listed["version"]) == ("paused", None, 2)
    assert "paused: it does not fire" in sts(workdir, "next", "beat").stdout

    resumed = sts(workdir, "resume", "beat", "--json")
    assert json.loads(resumed.stdout) == {"name": "beat", "state": "active", "version": 3}
    upcoming = json.loads(sts(workdir, "next", "beat", "-n", "3", "--json").stdout)["next_fires"]
    with _scheduler(workdir) as scheduler:
        first = scheduler.next_fire_time("beat")
        assert scheduler.get_task("beat").enabled
    assert upcoming == [(first + timedelta(hours=h)).isoformat() for h in range(3)]

    triggered = sts(workdir, "trigger", "beat")
    assert triggered.returncode == 0, triggered.stderr
    run_id = triggered.stdout.split()[2]
    assert "recorded once a worker takes it" in sts(workdir, "runs", run_id).stderr
    worked = sts(workdir, "worker", "--for", "1.5s")
    assert worked.returncode == 0, worked.stderr
    done = json.loads(sts(workdir, "runs", run_id, "--json").stdout)
    assert (done["task_name"], done["reason"], done["state"], done["output"]) == ("beat", "manual", "succeeded",
                                                                                "hello, world\n")

    removed = sts(workdir, "remove", "beat")
    assert (removed.returncode, removed.stdout.strip()) == (0, "removed beat")
    assert sts(workdir, "tasks").stdout.strip() == "No tasks stored in the redis backend."
    gone = sts(workdir, "pause", "beat")
    assert gone.returncode == 2 and "no task named 'beat'" in gone.stderr


def test_a_running_scheduler_stops_firing_a_task_paused_from_the_command_line(workdir):
    (workdir / "tick.yaml").write_text("tasks:\n  - name: tick\n    function: redis_jobs:greet\n    every: 0.2s\n")
    process = subprocess.Popen(
        [*sts_command(), "run", "tick.yaml", "--config", "sts.yaml"], cwd=workdir, env=clean_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    seen: list[str] = []
    try:
        read_until(process, "tick attempt 1 succeeded", seen)
        assert sts(workdir, "pause", "tick").returncode == 0
        with _scheduler(workdir) as scheduler:
            paused_at = len(scheduler.runs("tick", limit=1000))
        time.sleep(1.2)  # six fire times of an unpaused task
        os.kill(process.pid, signal.SIGINT)
        process.communicate(timeout=20)
    finally:
        process.kill()
    with _scheduler(workdir) as scheduler:
        after = len(scheduler.runs("tick", limit=1000))
    assert after <= paused_at + 1  # at most the one in flight as the pause landed


def test_next_of_a_task_whose_trigger_this_process_cannot_build_says_so(workdir):
    with _scheduler(workdir) as scheduler:
        scheduler.add_task(Task("beat", function="redis_jobs:greet", every="1h"))
    result = run_sts("next", "beat", "--config", "sts.yaml", cwd=workdir, STS_DISABLE_PLUGINS="triggers")
    assert result.returncode == 2, result.stdout
    assert "task 'beat': its trigger cannot be built here" in result.stderr
    assert "runs once" not in result.stdout
