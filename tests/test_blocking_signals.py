"""Signals and the blocking ``TaskScheduler`` in a user's own program (a real process, a real SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from cli_helpers import read_until

PROGRAM = '''\
import time
from sts.config import Config
from sts.scheduler import TaskScheduler
from sts.task import Task

scheduler = TaskScheduler(config=Config())
scheduler.add_task(Task("tick", function=lambda: print("tick", flush=True), every="0.2s"))
scheduler.start()
try:
    {wait}
except KeyboardInterrupt:
    print("caught KeyboardInterrupt; scheduler running:", scheduler.running, flush=True)
print("after the try", flush=True)
'''


def _run_until_interrupted(tmp_path: Path, wait: str) -> tuple[int, str, str]:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM.format(wait=wait))
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        seen = [read_until(process, "tick attempt 1 succeeded")]
        process.send_signal(signal.SIGINT)  # once
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    return process.returncode, "".join(seen) + out, err


def test_the_first_sigint_stops_the_scheduler_and_reaches_the_programs_except_keyboardinterrupt(tmp_path):
    code, out, err = _run_until_interrupted(tmp_path, "while True:\n        time.sleep(0.1)")
    assert code == 0, err
    assert "STS stopped" in out
    assert "caught KeyboardInterrupt; scheduler running: False" in out
    assert out.index("STS stopped") < out.index("caught KeyboardInterrupt")
    assert "after the try" in out


def test_the_first_sigint_during_wait_reaches_the_program_too(tmp_path):
    code, out, err = _run_until_interrupted(tmp_path, "scheduler.wait()")
    assert code == 0, err
    assert "caught KeyboardInterrupt; scheduler running: False" in out
    assert "Traceback" not in err


OWN_HANDLER = '''\
import signal
from sts.config import Config
from sts.scheduler import TaskScheduler
from sts.task import Task

signal.signal(signal.SIGINT, lambda signum, frame: print("own handler; scheduler running:", scheduler.running,
                                                        flush=True))
scheduler = TaskScheduler(config=Config())
scheduler.add_task(Task("tick", function=lambda: None, every="0.2s"))
scheduler.start()
scheduler.wait()
print("own handler still installed:", signal.getsignal(signal.SIGINT).__name__ == "<lambda>", flush=True)
'''


def test_a_programs_own_sigint_handler_is_called_after_the_graceful_stop_and_stays_installed(tmp_path):
    script = tmp_path / "own.py"
    script.write_text(OWN_HANDLER)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        seen = [read_until(process, "tick attempt 1 succeeded")]
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    out = "".join(seen) + out
    assert process.returncode == 0, err
    assert "own handler; scheduler running: False" in out
    assert out.index("STS stopped") < out.index("own handler;")
    assert "own handler still installed: True" in out


HOLDING_A_LOG_LOCK = '''\
import logging, signal, time
from sts.config import Config
from sts.scheduler import TaskScheduler
from sts.task import Task

scheduler = TaskScheduler(config=Config())
scheduler.add_task(Task("tick", function=lambda: None, every="0.2s"))
scheduler.start()
time.sleep(0.5)
handler = logging.getLogger("sts").handlers[0]
try:
    handler.acquire()  # the main thread is inside a log call when Ctrl-C arrives
    try:
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.1)
    finally:
        handler.release()
except KeyboardInterrupt:
    print("caught KeyboardInterrupt", flush=True)
print("stopped:", scheduler.wait(5), flush=True)
'''


def test_ctrl_c_while_the_main_thread_holds_a_logging_lock_does_not_deadlock(tmp_path: Path) -> None:
    """The interrupted main thread holds the lock of the handler the stop logs through: the signal
    handler must not wait for the stop (both would wait for ever); the stop finishes once the
    KeyboardInterrupt has unwound the main thread out of its log call."""
    script = tmp_path / "program.py"
    script.write_text(HOLDING_A_LOG_LOCK)
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=tmp_path)
    try:
        out, _ = process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
        raise AssertionError("deadlocked after SIGINT:\n" + out[-600:]) from None
    assert "caught KeyboardInterrupt" in out
    assert out.rstrip().endswith("stopped: True")
