"""``sts run`` reloads its task file on SIGHUP and, with ``--watch``, when the file changes
(a real process, real signals, a real file)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from cli_helpers import clean_environment, read_until, run_sts, sts_command, summary_table

JOBS = '''\
def greet(name="world"):
    print(f"hello, {name}")
    return name
'''

FIRST = """\
tasks:
  - name: stays
    function: reload_jobs:greet
    every: 1s
  - name: goes
    function: reload_jobs:greet
    every: 1s
  - name: changes
    function: reload_jobs:greet
    every: 1h
"""

SECOND = """\
tasks:
  - name: stays
    function: reload_jobs:greet
    every: 1s
  - name: changes
    function: reload_jobs:greet
    every: 1s
  - name: arrives
    function: reload_jobs:greet
    kwargs: {name: newcomer}
    every: 1s
"""

CHILD_OF_GOES = """\
  - name: child
    function: reload_jobs:greet
    parent_tasks: [goes]
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "reload_jobs.py").write_text(JOBS)
    (tmp_path / "tasks.yaml").write_text(FIRST)
    return tmp_path


def _start(workdir: Path, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*sts_command(), "run", "tasks.yaml", *options], cwd=workdir, env=clean_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _read_times(process: subprocess.Popen[str], needle: str, times: int, seen: list[str]) -> None:
    for _ in range(times):
        read_until(process, needle, seen)


def _finish(process: subprocess.Popen[str], seen: list[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    return "".join(seen) + out, err


def test_sighup_applies_the_changed_file_and_logs_what_changed_instead_of_ending_the_process(workdir):
    process = _start(workdir)
    seen: list[str] = []
    try:
        read_until(process, "goes attempt 1 succeeded", seen)
        (workdir / "tasks.yaml").write_text(SECOND)
        process.send_signal(signal.SIGHUP)
        read_until(process, "reloaded task file tasks.yaml", seen)
        # Both fire about 1 s after the reload, in either order.
        for needle in ("arrives attempt 1 succeeded", "changes attempt 1 succeeded"):
            if needle not in "".join(seen).split("reloaded task file", 1)[1]:
                read_until(process, needle, seen)
        assert process.poll() is None, "SIGHUP must not end the process"
        out, err = _finish(process, seen)
    finally:
        process.kill()
    assert process.returncode == 0, err
    reload_line = next(line for line in out.splitlines() if "reloaded task file" in line)
    assert "added 1 (arrives), changed 1 (changes), removed 1 (goes), unchanged 1" in reload_line
    after = out.split("reloaded task file", 1)[1].split("Run summary", 1)[0]
    assert "goes attempt" not in after  # removed: it no longer fires
    assert "changes attempt 1 succeeded" in after  # every 1h -> every 1s
    assert summary_table(out)["arrives"]["succeeded"] >= 1


def test_a_rejected_file_on_sighup_leaves_every_task_as_it_was_and_logs_why(workdir):
    process = _start(workdir)
    seen: list[str] = []
    try:
        read_until(process, "goes attempt 1 succeeded", seen)
        (workdir / "tasks.yaml").write_text(SECOND.replace("every: 1s\n  - name: arrives", "every: soon\n"
                                                           "  - name: arrives"))
        process.send_signal(signal.SIGHUP)
        read_until(process, "rejected, every task stays as it was", seen)
        _read_times(process, "goes attempt 1 succeeded", 2, seen)  # still firing: not removed
        out, err = _finish(process, seen)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "tasks.yaml:7: tasks[1] (changes).every" in out + err
    assert "arrives" not in summary_table(out)


def test_dropping_a_parent_that_a_remaining_task_needs_is_rejected_as_a_whole(workdir):
    (workdir / "tasks.yaml").write_text(FIRST + CHILD_OF_GOES)
    process = _start(workdir)
    seen: list[str] = []
    try:
        read_until(process, "goes attempt 1 succeeded", seen)
        (workdir / "tasks.yaml").write_text(SECOND + CHILD_OF_GOES)
        process.send_signal(signal.SIGHUP)
        read_until(process, "rejected, every task stays as it was", seen)
        _read_times(process, "goes attempt 1 succeeded", 2, seen)
        out, err = _finish(process, seen)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "child: names goes in parent_tasks" in out
    assert "arrives" not in summary_table(out)  # nothing of the file was applied


def test_watch_reloads_the_file_when_it_changes(workdir):
    process = _start(workdir, "--watch")
    seen: list[str] = []
    try:
        read_until(process, "goes attempt 1 succeeded", seen)
        (workdir / "tasks.yaml").write_text(SECOND)
        read_until(process, "tasks.yaml changed: reloading it", seen, timeout=10)
        read_until(process, "arrives attempt 1 succeeded", seen)
        out, err = _finish(process, seen)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "added 1 (arrives), changed 1 (changes), removed 1 (goes), unchanged 1" in out


def test_watch_without_a_task_file_is_a_usage_error(tmp_path):
    result = run_sts("run", "--watch", cwd=tmp_path)
    assert result.returncode == 2
    assert "--watch needs a task file" in result.stderr


def test_a_removal_that_fails_is_reported_as_a_partial_reload_and_done_at_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from sts_cli.reloading import TaskFileReloader
    from sts_core.blocking import TaskScheduler
    from sts_core.config import Config
    from sts_core.errors import BackendUnavailableError

    (tmp_path / "reload_jobs.py").write_text(JOBS)
    monkeypatch.syspath_prepend(str(tmp_path))
    task_file = tmp_path / "tasks.yaml"
    task_file.write_text(FIRST)
    with TaskScheduler(config=Config({"logging": {"loglevel": "WARNING"}})) as scheduler:
        reloader = TaskFileReloader(scheduler, task_file, scheduler.load_task_file(task_file))
        task_file.write_text(SECOND)
        real_delete, failures = scheduler.delete_task, [BackendUnavailableError("redis at 127.0.0.1:1 is down")]

        def flaky_delete(name: str) -> bool:
            if failures:
                raise failures.pop()
            return real_delete(name)

        monkeypatch.setattr(scheduler, "delete_task", flaky_delete)
        assert reloader.reload() is None
        assert "applied in part" in caplog.text and "removing 'goes' failed" in caplog.text
        assert "arrives" in {task.name for task in scheduler.list_tasks()}
        assert reloader.changed_on_disk(), "a partial reload is tried again at --watch's next look"
        summary = reloader.reload()
        assert summary is not None and summary.removed == ("goes",)
        assert "goes" not in {task.name for task in scheduler.list_tasks()}


def test_a_reload_of_a_task_file_with_a_control_character_is_rejected_not_raised(tmp_path) -> None:
    from sts_cli.reloading import TaskFileReloader
    from sts_core.blocking import TaskScheduler
    from tests.conftest import quiet_config

    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n  - name: a\n    type: shell\n    command: echo a\n    every: 1h\n")
    sched = TaskScheduler(quiet_config())
    try:
        reloader = TaskFileReloader(sched, path, sched.load_task_file(path))
        # an ANSI colour code pasted into the file: refused with the usual message, not raised
        path.write_text("tasks:\n  - name: a\n    type: shell\n    command: echo \x1b[31ma\n    every: 1h\n")
        assert reloader.reload() is None
        assert [task.name for task in sched.list_tasks()] == ["a"]
    finally:
        sched.stop()
