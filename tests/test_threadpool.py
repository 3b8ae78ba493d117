"""The daemon thread pool that runs synchronous task functions."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from sts_core.threadpool import DaemonThreadPool


def test_it_starts_at_most_max_workers_threads_and_reuses_them():
    asyncio.run(_it_starts_at_most_max_workers_threads_and_reuses_them())


async def _it_starts_at_most_max_workers_threads_and_reuses_them():
    pool = DaemonThreadPool(3)
    gate = threading.Event()
    calls = [asyncio.ensure_future(pool.call(gate.wait, 5)) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert len({t for t in threading.enumerate() if t.name.startswith("sts-run")}) <= 3
    gate.set()
    assert all(await asyncio.gather(*calls))
    for _ in range(20):
        await pool.call(lambda: None)
    assert len(pool._threads) == 3
    pool.shutdown()


def test_its_threads_are_daemons_so_a_hung_function_does_not_keep_the_process_alive():
    code = (
        "import asyncio, time\nfrom sts_core.threadpool import DaemonThreadPool\n"
        "async def main():\n"
        "    asyncio.ensure_future(DaemonThreadPool(1).call(time.sleep, 60))\n"
        "    await asyncio.sleep(0.1)\n"
        "asyncio.run(main())\nprint('bye')\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "bye", done.stderr
    assert time.monotonic() - started < 10


def test_a_shut_down_pool_refuses_new_calls():
    async def main() -> None:
        pool = DaemonThreadPool(1)
        pool.shutdown()
        with pytest.raises(RuntimeError, match="shut down"):
            await pool.call(lambda: None)

    asyncio.run(main())


def test_call_hands_results_and_exceptions_to_the_running_loop():
    asyncio.run(_call_hands_results_and_exceptions_to_the_running_loop())


async def _call_hands_results_and_exceptions_to_the_running_loop():
    pool = DaemonThreadPool(4)
    results = await asyncio.gather(*(pool.call(lambda i=i: i * 2) for i in range(200)))
    assert results == [i * 2 for i in range(200)]
    with pytest.raises(ZeroDivisionError):
        await pool.call(lambda: 1 / 0)
    with pytest.raises(RuntimeError, match="StopIteration"):  # asyncio futures refuse StopIteration itself
        await pool.call(lambda: next(iter(())))
    pool.shutdown()


def test_call_drops_the_late_result_of_an_abandoned_call():
    asyncio.run(_call_drops_the_late_result_of_an_abandoned_call())


async def _call_drops_the_late_result_of_an_abandoned_call():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    late = []
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.call(lambda: late.append(gate.wait(5)) or "late"), 0.05)
    gate.set()
    assert await pool.call(lambda: "next") == "next"  # the abandoned call's result went nowhere
    assert late == [True]
    pool.shutdown()


def test_call_skips_a_call_cancelled_before_a_thread_took_it():
    asyncio.run(_call_skips_a_call_cancelled_before_a_thread_took_it())


async def _call_skips_a_call_cancelled_before_a_thread_took_it():
    pool = DaemonThreadPool(1, max_abandoned=0)
    gate = threading.Event()
    calls = []
    busy = asyncio.ensure_future(pool.call(gate.wait, 5))
    waiting = asyncio.ensure_future(pool.call(calls.append, "ran"))
    await asyncio.sleep(0)
    waiting.cancel()
    gate.set()
    await busy
    await pool.call(lambda: None)
    assert calls == []
    assert pool.abandoned_threads == 0  # a call that never started abandons no thread
    pool.shutdown()


def test_shutdown_cancels_what_waits_for_a_call():
    asyncio.run(_shutdown_cancels_what_waits_for_a_call())


async def _shutdown_cancels_what_waits_for_a_call():
    pool = DaemonThreadPool(1)
    gate = threading.Event()
    running = asyncio.ensure_future(pool.call(gate.wait, 5))
    waiting = asyncio.ensure_future(pool.call(lambda: "never"))
    await asyncio.sleep(0.05)
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(asyncio.CancelledError):
        await waiting
    gate.set()
    assert await running is True


def test_a_call_waiting_for_a_thread_does_not_spend_its_timeout():
    asyncio.run(_a_call_waiting_for_a_thread_does_not_spend_its_timeout())


async def _a_call_waiting_for_a_thread_does_not_spend_its_timeout():
    pool = DaemonThreadPool(1, max_abandoned=0)
    busy = asyncio.ensure_future(pool.call(time.sleep, 0.3))
    await asyncio.sleep(0)
    started = time.monotonic()
    async with asyncio.timeout(0.2) as deadline:
        assert await pool.call(lambda: "quick", deadline=deadline) == "quick"
    assert time.monotonic() - started >= 0.25  # waited longer than its timeout, and was not charged for it
    await busy
    # ... but once started, the call has its whole timeout and no more.
    gate = threading.Event()
    busy = asyncio.ensure_future(pool.call(time.sleep, 0.2))
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2) as deadline:
            await pool.call(gate.wait, 5, deadline=deadline)
    assert 0.35 <= time.monotonic() - started < 1.0
    gate.set()
    pool.shutdown()


def test_an_abandoned_thread_is_replaced_so_other_calls_do_not_wait():
    asyncio.run(_an_abandoned_thread_is_replaced_so_other_calls_do_not_wait())


async def _an_abandoned_thread_is_replaced_so_other_calls_do_not_wait():
    pool = DaemonThreadPool(1, max_abandoned=2)
    gate = threading.Event()
    reports = []
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.call(gate.wait, 5, on_abandon=lambda *report: reports.append(report)), 0.05)
    assert reports == [(1, True)]
    assert pool.abandoned_threads == 1
    assert await asyncio.wait_for(pool.call(lambda: "served"), 1.0) == "served"  # by the replacement
    gate.set()
    for _ in range(100):  # the abandoned call returns: its thread leaves, one thread serves again
        if pool.abandoned_threads == 0 and len(pool._threads) == 1:
            break
        await asyncio.sleep(0.01)
    assert (pool.abandoned_threads, len(pool._threads)) == (0, 1)
    pool.shutdown()


def test_past_the_cap_abandoned_threads_are_not_replaced_and_calls_wait(caplog):
    asyncio.run(_past_the_cap_abandoned_threads_are_not_replaced_and_calls_wait(caplog))


async def _past_the_cap_abandoned_threads_are_not_replaced_and_calls_wait(caplog):
    pool = DaemonThreadPool(1, max_abandoned=1)
    gate = threading.Event()
    reports = []
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.call(gate.wait, 5, on_abandon=lambda *report: reports.append(report)), 0.05)
    assert reports == [(1, True), (2, False)]
    waiting = asyncio.ensure_future(pool.call(lambda: "after"))
    await asyncio.sleep(0.05)
    assert not waiting.done() and pool.waiting == 1 and len(pool._threads) == 2
    assert "executor.max_abandoned_threads=1" in caplog.text
    gate.set()  # the hung calls return: their threads serve again
    assert await asyncio.wait_for(waiting, 1.0) == "after"
    for _ in range(100):
        if len(pool._threads) == 1:
            break
        await asyncio.sleep(0.01)
    assert (pool.abandoned_threads, pool.waiting, len(pool._threads)) == (0, 0, 1)
    pool.shutdown()
