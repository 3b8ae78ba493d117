"""Test support shipped with the kernel, registered as a pytest plugin (``pytest11: sts``).

It gives every test suite, the kernel's and each plugin's:

- ``FakeClock`` and the ``fake_clock`` fixture: time that moves only when a test moves it;
- ``StubConfig``: the ``config.get("dotted.path", default)`` surface a backend factory reads;
- the ``make_plugin_manager`` fixture: a plugin manager holding only the plugins a test names;
- ``StoreContract`` and ``BrokerContract``: the conformance suites every backend runs, and
  ``AtomicStepsContract`` for a backend that offers ``AtomicSteps``;
- ``EventRecorder``: a plugin keeping every event the engine emits;
- ``run_cli(argv)``: the ``sts`` command line run in this process, for testing a plugin's commands,
  and ``sts_command()``: the words that run it in a new process, as a user does;
- ``until(condition, timeout, what)``: wait in real time for a condition, in tests against real
  servers and processes (``processes`` has free ports and children that die with the test run).

A backend plugin runs the suites by subclassing them in one of its test modules and giving
one fixture, ``make_backend``, that builds a fresh, empty backend::

    # plugins/sts-redis/tests/test_redis_contract.py
    import pytest
    from sts_core.testing import BrokerContract, StoreContract, StubConfig
    from sts_redis.backend import build_backend

    @pytest.fixture
    def make_backend(redis_url):
        def make(clock, settings):
            # settings: "lease_time" (seconds), "max_runs_per_task" (int or None),
            # "max_age" (seconds or None); map them onto the plugin's own config keys.
            return build_backend(StubConfig({...}), clock)
        return make

    class TestRedisStore(StoreContract): ...
    class TestRedisBroker(BrokerContract): ...
    class TestRedisAtomicSteps(AtomicStepsContract): ...  # only with AtomicSteps

The suites open and close the backend themselves and drive time only through the
``FakeClock`` they pass in, so a backend must take every time it uses from the clock and
do its waiting through ``clock.wait``. They compare tasks and runs by value (``to_dict``),
never by object identity, so a backend that serialises works unchanged. Each test builds
its own backend: ``make_backend`` must return one that shares no data with earlier ones.

The code lives in submodules; import every name from ``sts_core.testing`` itself:
``clock`` holds ``FakeClock``; ``contracts`` the suites' shared helpers, and
``store_contract``, ``broker_contract`` and ``atomic_contract`` the suites. A capability the
Protocols make optional is tested where the backend offers it and skipped where it does not.
The fixtures are defined here, in the module the ``pytest11`` entry point registers.

This package imports only the standard library and pytest at import time (it loads in every
pytest session); kernel modules are imported where they are used.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sts_core.testing.atomic_contract import AtomicStepsContract
from sts_core.testing.broker_contract import BrokerContract
from sts_core.testing.clock import DEFAULT_START, FakeClock
from sts_core.testing.contracts import DEFAULT_SETTINGS
from sts_core.testing.events import EventRecorder
from sts_core.testing.store_contract import StoreContract

if TYPE_CHECKING:
    from sts_core.plugins import PluginManager

__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_START",
    "AtomicStepsContract",
    "BrokerContract",
    "EventRecorder",
    "FakeClock",
    "StoreContract",
    "StubConfig",
    "fake_clock",
    "make_plugin_manager",
    "noop",
    "run_cli",
    "sts_command",
    "until",
]


# --- time --------------------------------------------------------------------------------------


@pytest.fixture
def fake_clock() -> FakeClock:
    """A ``FakeClock`` at 2026-01-01T00:00Z."""
    return FakeClock()


# --- config and plugins ----------------------------------------------------------------------


class StubConfig:
    """A stand-in for the kernel's config in plugin tests: nested mappings read by dotted path."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = data or {}

    def get(self, path: str, default: Any = None) -> Any:
        """The value at ``path`` (e.g. ``"history.max_age"``), or ``default`` when absent."""
        node: Any = self._data
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node


@pytest.fixture
def make_plugin_manager() -> Callable[..., PluginManager]:
    """``make_plugin_manager(("name", module_or_object), ...)``: a manager with only those plugins.

    Entry points are not scanned, so the result does not depend on what is installed.
    """
    from sts_core.plugins import PluginManager

    def make(*plugins: tuple[str, object], disable: tuple[str, ...] = ()) -> PluginManager:
        return PluginManager(disable, entry_points=False, plugins=plugins)

    return make


def run_cli(argv: Sequence[str]) -> int:
    """Run the ``sts`` command line in this process with ``argv`` (the words after ``sts``) and
    return its exit status: for testing the commands a plugin registers (``register_commands``)."""
    from sts_cli import main  # the command line is an application on the kernel, not part of it

    return main(argv)


#: The entry point of the ``sts`` console script.
STS_ENTRY_POINT = "sts_cli:main"


def sts_command() -> list[str]:
    """The command line that runs ``sts`` in a new process as a user does: this environment's console
    script, or where it is missing or stale (an editable install keeps the entry point of its last
    ``pip install``) the entry point run by this interpreter with ``-P``, which, like the script,
    leaves the working directory off ``sys.path`` (``python -m`` alone would add it, and hide
    whether the command does)."""
    script = Path(sys.executable).with_name("sts")
    installed = [ep.value for ep in metadata.entry_points(group="console_scripts", name="sts")]
    if script.exists() and installed == [STS_ENTRY_POINT]:
        return [str(script)]
    return [sys.executable, "-P", "-m", "sts_cli"]


def noop() -> None:
    """A function for test tasks to refer to by import path (``sts_core.testing:noop``)."""


async def until(condition: Callable[[], Awaitable[bool] | bool], timeout: float = 10.0, what: str = "") -> None:
    """Wait in real time until ``condition()`` (a function or a coroutine function) is true, or
    fail with ``what`` after ``timeout`` seconds; for tests against real servers and processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition}")

