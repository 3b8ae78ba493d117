"""The plugin API: ``sts.plugin`` is the one module plugins import the kernel from, and the
scheduler hooks receive answers the ``SchedulerView`` reads without a plugin touching its backend."""

from __future__ import annotations

import ast
import asyncio
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sts.plugin
from sts.plugin import PluginManager, SchedulerView, hookimpl
from sts_core.scheduler import AsyncTaskScheduler

ROOT = Path(__file__).resolve().parent.parent
#: What a plugin's tests (and its shipped test helpers) may import from ``sts_core``.
TEST_SUPPORT = "sts_core.testing"


def _imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every module ``path`` imports, ``from X import y`` as ``X.y``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_shipped_plugins_import_the_kernel_only_through_sts_plugin() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "plugins").rglob("*.py"))
        for line, module in _imported_modules(path)
        if _is_under(module, "sts_core") and not _is_under(module, TEST_SUPPORT)
    ]
    assert not offending, (
        "plugins import the kernel through sts.plugin only (tests may also use sts_core.testing); "
        "import these names from sts.plugin, adding them there if a plugin needs them:\n" + "\n".join(offending)
    )


def test_the_kernel_never_imports_the_plugin_api() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in sorted((ROOT / "sts_core").rglob("*.py"))
        for line, module in _imported_modules(path)
        if _is_under(module, "sts.plugin")
    ]
    assert not offending, "sts_core must not import sts.plugin, which re-exports it:\n" + "\n".join(offending)



@pytest.mark.parametrize("name", sts.plugin.__all__)
def test_every_name_of_the_plugin_api_resolves_and_says_what_it_is(name: str) -> None:
    value = getattr(sts.plugin, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert (inspect.getdoc(value) or "").strip(), f"sts.plugin.{name} needs a docstring"


def test_the_plugin_api_names_are_unique() -> None:
    assert len(sts.plugin.__all__) == len(set(sts.plugin.__all__))


def test_importing_the_plugin_api_scans_no_entry_point_and_loads_no_plugin() -> None:
    probe = (
        "import importlib.metadata, sys\n"
        "def scan(*args, **kwargs):\n"
        "    raise AssertionError('importing sts.plugin scanned entry points')\n"
        "importlib.metadata.entry_points = scan\n"
        "import sts.plugin\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('sts_') and not m.startswith('sts_core'))\n"
        "assert not loaded, loaded\n"
        "assert 'sts_core.config' not in sys.modules  # imported on first use of Config\n"
        "from sts.plugin import Config, PluginManager\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# --- the scheduler as hooks see it -------------------------------------------------------------


def _members(protocol: type) -> list[str]:
    return sorted(name for name in vars(protocol) if not name.startswith("_"))


def test_the_async_scheduler_offers_every_read_of_the_view(make_scheduler) -> None:
    scheduler = make_scheduler()
    for name in _members(SchedulerView):
        declared = inspect.getattr_static(SchedulerView, name)
        assert hasattr(scheduler, name), f"AsyncTaskScheduler has no {name}, which SchedulerView declares"
        if inspect.isfunction(declared):
            actual = getattr(AsyncTaskScheduler, name)
            assert inspect.iscoroutinefunction(actual) == inspect.iscoroutinefunction(declared), name
            assert list(inspect.signature(actual).parameters) == list(inspect.signature(declared).parameters), name


def test_the_view_reads_the_backend_for_plugins(make_scheduler) -> None:
    async def main() -> tuple[Any, ...]:
        async with make_scheduler() as scheduler:
            await scheduler.check_backend()
            return scheduler.shared_backend, await scheduler.queue_counts(), await scheduler.queue_depth()

    shared, counts, depth = asyncio.run(main())
    assert shared is False  # the memory backend lives in this process
    assert counts == {"ready": 0, "delayed": 0, "leased": 0, "dead": 0}
    assert depth == 0


def test_check_backend_raises_what_the_backend_raised(make_scheduler, monkeypatch) -> None:
    async def down() -> None:
        raise ConnectionError("store unreachable")

    async def main() -> None:
        async with make_scheduler() as scheduler:
            monkeypatch.setattr(scheduler.backend.store, "next_due_time", down)
            await scheduler.check_backend()

    with pytest.raises(ConnectionError, match="store unreachable"):
        asyncio.run(main())


class _DepthOnlyBroker:
    """The memory broker without the optional ``queue_counts`` (every other member is its own)."""

    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        if name == "queue_counts":
            raise AttributeError(name)
        return getattr(self._broker, name)

    async def depth(self) -> int:
        return await self._broker.depth() + 7


class _DepthOnlyBackendPlugin:
    """Registers the backend ``depth-only``: the memory backend with a ``_DepthOnlyBroker``."""

    def __init__(self, memory_factory: Any) -> None:
        self._memory_factory = memory_factory

    @hookimpl
    def register_backends(self, register: Any) -> None:
        def build(config: Any, clock: Any) -> Any:
            memory = self._memory_factory(config, clock)
            return type("Backend", (), {"store": memory.store, "broker": _DepthOnlyBroker(memory.broker)})()

        register("depth-only", build)


def test_a_broker_that_does_not_count_by_state_gives_no_counts_but_its_depth(make_scheduler) -> None:
    plugins = PluginManager()
    plugins.register("depth-only", _DepthOnlyBackendPlugin(plugins.lookup("backend", "memory").value))

    async def main() -> tuple[Any, int]:
        async with make_scheduler(plugins=plugins, scheduler_backend="depth-only") as scheduler:
            return await scheduler.queue_counts(), await scheduler.queue_depth()

    assert asyncio.run(main()) == (None, 7)
