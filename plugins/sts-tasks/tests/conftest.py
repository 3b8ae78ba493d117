"""Fixtures for the task type tests: a fake ``ExecutionContext`` and an importable samples module."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sts.plugin import ExecutionContext, FunctionRegistry, Run, Task

# ``sts_tasks_samples`` must be importable by import path, here and in child processes.
SAMPLES_DIR = str(Path(__file__).parent)
if SAMPLES_DIR not in sys.path:
    sys.path.insert(0, SAMPLES_DIR)


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="test-pool")
    yield executor
    executor.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def registry() -> FunctionRegistry:
    return FunctionRegistry()


@pytest.fixture
def make_context(pool: ThreadPoolExecutor) -> Callable[..., ExecutionContext]:
    """``make_context(task, prepared, **settings)``: an ExecutionContext with a ``ListOutput``."""

    def run_sync(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args, **kwargs))

    def make(task: Task, prepared: Any, **settings: Any) -> ExecutionContext:
        from sts_tasks_helpers import ListOutput

        merged: Mapping[str, Any] = {"executor": "thread", "kill_grace": 0.5, **settings}
        run = Run(id="r-1", task_name=task.name, task_version=1, scheduled_for=datetime.now(UTC))
        return ExecutionContext(
            run=run, task=task, prepared=prepared, output=ListOutput(), run_sync=run_sync, settings=merged
        )

    return make
