"""The daemon thread pool that runs synchronous task functions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from sts_core.threadpool import DaemonThreadPool


def test_it_runs_work_and_returns_results_and_exceptions():
    pool = DaemonThreadPool(2)
    assert pool.submit(lambda a, b: a + b, 1, b=2).result(5) == 3
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(5)
    pool.shutdown()


def test_it_starts_at_most_max_workers_threads_and_reuses_them():
    pool = DaemonThreadPool(3)
    gate = threading.Event()
    futures = [pool.submit(gate.wait, 5) for _ in range(10)]
    time.sleep(0.05)
    assert len({t for t in threading.enumerate() if t.name.startswith("sts-run")}) <= 3
    gate.set()
    assert all(f.result(5) for f in futures)
    for _ in range(20):
        pool.submit(lambda: None).result(5)
    assert len(pool._threads) == 3
    pool.shutdown()


def test_its_threads_are_daemons_so_a_hung_function_does_not_keep_the_process_alive():
    code = (
        "import time\nfrom sts_core.threadpool import DaemonThreadPool\n"
        "DaemonThreadPool(1).submit(time.sleep, 60)\ntime.sleep(0.1)\nprint('bye')\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "bye"
    assert time.monotonic() - started < 10


def test_shutdown_refuses_new_work_and_can_cancel_what_waits():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    running = pool.submit(gate.wait, 5)
    waiting = pool.submit(lambda: "never")
    time.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(lambda: None)
    gate.set()
    assert running.result(5) is True


def test_run_for_loop_hands_results_and_exceptions_to_the_running_loop():
    asyncio.run(_run_for_loop_hands_results_and_exceptions_to_the_running_loop())


async def _run_for_loop_hands_results_and_exceptions_to_the_running_loop():
    pool = DaemonThreadPool(4)
    results = await asyncio.gather(*(pool.run_for_loop(lambda i=i: i * 2) for i in range(200)))
    assert results == [i * 2 for i in range(200)]
    with pytest.raises(ZeroDivisionError):
        await pool.run_for_loop(lambda: 1 / 0)
    with pytest.raises(RuntimeError, match="StopIteration"):  # asyncio futures refuse StopIteration itself
        await pool.run_for_loop(lambda: next(iter(())))
    pool.shutdown()


def test_run_for_loop_drops_the_late_result_of_an_abandoned_call():
    asyncio.run(_run_for_loop_drops_the_late_result_of_an_abandoned_call())


async def _run_for_loop_drops_the_late_result_of_an_abandoned_call():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    slow = pool.run_for_loop(gate.wait, 5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(slow, 0.05)
    gate.set()
    assert await pool.run_for_loop(lambda: "next") == "next"  # the abandoned call's result went nowhere
    assert slow.cancelled()
    pool.shutdown()


def test_run_for_loop_skips_a_call_cancelled_before_a_thread_took_it():
    asyncio.run(_run_for_loop_skips_a_call_cancelled_before_a_thread_took_it())


async def _run_for_loop_skips_a_call_cancelled_before_a_thread_took_it():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    calls = []
    busy = pool.run_for_loop(gate.wait, 5)
    waiting = pool.run_for_loop(calls.append, "ran")
    waiting.cancel()
    gate.set()
    await busy
    await pool.run_for_loop(lambda: None)
    assert calls == []
    pool.shutdown()


def test_shutdown_cancels_what_waits_for_run_for_loop():
    asyncio.run(_shutdown_cancels_what_waits_for_run_for_loop())


async def _shutdown_cancels_what_waits_for_run_for_loop():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    running = pool.run_for_loop(gate.wait, 5)
    waiting = pool.run_for_loop(lambda: "never")
    await asyncio.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    assert waiting.cancelled()
    gate.set()
    assert await running is True
