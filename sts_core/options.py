"""Task options that plugins declare: a trigger kind or task type brings its own options.

The kernel's ``Task`` holds what every task has (name, type, timing, retries, parents, ...);
every other option is declared by the plugin it belongs to, as an ``Option`` given to the
``register`` callback of ``register_triggers`` or ``register_task_types``::

    register("interval", IntervalTrigger.from_spec, options=[Option("every", convert=interval, doc=...)])
    register("python", PythonTaskType(), options=[Option("function", convert=function), ...])

An option declared by a trigger kind is that kind's shorthand: ``every: 30s`` on a task means
``trigger: {kind: interval, every: 30}``. An option declared by a task type is read by that type
(``task.function``); ``Task`` converts and checks every option when it is created.

Which plugins ``Task`` asks: those installed in the process (the ``sts`` entry points),
discovered once, lazily, on the first ``Task`` that needs them, plus the plugins added with
``add_plugin`` (an embedded application's own task type; a test's, with ``plugin_added``).
They describe installed code, so one set per process is right. Plugins switched off (config
``plugins.disable``, ``STS_DISABLE_PLUGINS``) still declare their options, so that tasks using
them read as before, stored ones included; a scheduler without the plugin refuses such a task
when it is added ("unknown trigger 'interval'; not loaded: triggers (disabled)") and reports a
stored one as one it cannot fire or run. A stored task may even hold options no plugin of
this process declares (``Task.from_stored``): it loads, and its plan says it cannot run here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from sts_core.errors import PluginError


@attrs.frozen
class Option:
    """One task option a plugin declares.

    ``convert(value)`` receives the value given (never None: None means "not given", and the
    option then has its ``default``) and returns the value the task keeps, or raises
    ``ValueError`` saying what was expected (the message is reported against the option's
    name). It must accept what it returns, since a task changed with ``attrs.evolve`` is
    checked again. ``to_data(value)``, when given, turns a kept value into JSON-safe data for
    ``Task.to_dict`` (raising ``ValueError`` when it cannot be stored); by default datetimes
    become ISO text and tuples lists. Defaults are shared by all tasks: keep them immutable.
    """

    name: str
    convert: Callable[[Any], Any]
    doc: str = ""
    default: Any = None
    to_data: Callable[[Any], Any] | None = None


@attrs.frozen
class DeclaredOption:
    """An ``Option`` with who declared it: the plugin, and the trigger kind or task type."""

    option: Option
    plugin: str
    role: str  # "trigger" or "task type"
    owner: str  # the trigger kind or task type name


class TaskOptions:
    """The options a set of plugins declares, by name.

    Raises ``PluginError`` naming both plugins when two plugins declare the same option (one
    plugin may declare one ``Option`` for several of its trigger kinds or task types), or when
    a plugin declares an option the kernel's ``Task`` already has.
    """

    def __init__(self, declared: Sequence[DeclaredOption], reserved: frozenset[str] = frozenset()) -> None:
        self._by_name: dict[str, DeclaredOption] = {}
        for item in declared:
            name = item.option.name
            if name in reserved:
                raise PluginError(f"plugin {item.plugin!r} declares the task option {name!r} for {item.role} "
                                  f"{item.owner!r}, but every task has that option already; rename it")
            other = self._by_name.get(name)
            if other is not None and (other.plugin != item.plugin or other.option != item.option):
                raise PluginError(
                    f"task option {name!r} is declared by both plugin {other.plugin!r} ({other.role} {other.owner!r}) "
                    f"and plugin {item.plugin!r} ({item.role} {item.owner!r}); disable one of them"
                )
            self._by_name.setdefault(name, item)
        self.names: frozenset[str] = frozenset(self._by_name)
        #: The trigger kind each trigger option selects (``every`` -> ``interval``).
        self.trigger_kinds: dict[str, str] = {
            name: item.owner for name, item in self._by_name.items() if item.role == "trigger"
        }
        #: The options task types declare (``function``, ``command``, ...).
        self.task_type_options: frozenset[str] = frozenset(
            name for name, item in self._by_name.items() if item.role == "task type"
        )

    def get(self, name: str) -> DeclaredOption | None:
        """The declaration of ``name``, or None."""
        return self._by_name.get(name)

    @classmethod
    def from_registrations(
        cls, triggers: Mapping[str, Any], task_types: Mapping[str, Any], reserved: frozenset[str] = frozenset()
    ) -> TaskOptions:
        """The options declared with ``options=`` in these registrations (``PluginManager.triggers()``,
        ``.task_types()``)."""
        declared = [
            DeclaredOption(option, registration.plugin, role, name)
            for role, registry in (("trigger", triggers), ("task type", task_types))
            for name, registration in registry.items()
            for option in _declared_by(registration, role, name)
        ]
        return cls(declared, reserved)


def _declared_by(registration: Any, role: str, owner: str) -> tuple[Option, ...]:
    options = registration.extra.get("options") or ()
    if isinstance(options, Option):
        options = (options,)
    for option in options:
        if not isinstance(option, Option):
            raise PluginError(f"plugin {registration.plugin!r} declares for {role} {owner!r} an option that is not "
                              f"an sts_core.options.Option: {option!r}")
    return tuple(options)


# --- the plugins of this process -------------------------------------------------------------

_lock = threading.Lock()
_installed: TaskOptions | None = None
_added: list[tuple[str, object]] = []


def installed_options() -> TaskOptions:
    """The options the plugins of this process declare (discovered once, on first use)."""
    global _installed
    found = _installed
    if found is None:
        # Built without the lock (two threads may both build it, harmlessly): a plugin module
        # that creates a task while it is imported must not deadlock.
        from sts_core.plugins import PluginManager
        from sts_core.task import CORE_TASK_KEYS

        with _lock:
            added = list(_added)
        # Disabled plugins too: their options are part of the tasks this process may read (a task
        # stored by a process with every plugin), and the scheduler that lacks them says so.
        manager = PluginManager(plugins=added, disable_from_env=False)
        found = _installed = TaskOptions.from_registrations(
            manager.triggers(), manager.task_types(), reserved=CORE_TASK_KEYS
        )
    return found


def add_plugin(name: str, plugin: object) -> None:
    """Add a plugin whose trigger kinds and task types declare options, for this process.

    For a plugin that is not installed as an ``sts`` entry point: an embedded application's
    own task type (register it with the scheduler too), or a test's (see ``plugin_added``).
    """
    with _lock:
        _added.append((name, plugin))
    forget_installed()


def remove_plugin(name: str) -> None:
    """Undo ``add_plugin(name, ...)``."""
    with _lock:
        _added[:] = [(added, plugin) for added, plugin in _added if added != name]
    forget_installed()


def forget_installed() -> None:
    """Discover the installed plugins again on next use (after installing one at run time)."""
    global _installed
    with _lock:
        _installed = None


@contextlib.contextmanager
def plugin_added(name: str, plugin: object) -> Iterator[None]:
    """``with plugin_added("mine", MyPlugin()):`` tasks may use the options ``MyPlugin`` declares."""
    add_plugin(name, plugin)
    try:
        yield
    finally:
        remove_plugin(name)
