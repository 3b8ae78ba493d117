"""The plugin manager: finds plugins through entry points and calls hooks through typed methods.

Nothing else in the code base touches ``pm.hook``. Each plugin is loaded in its own error
handling, so a broken plugin is reported by name and takes nothing down unless the config
needs what it provides. One manager per scheduler: no global plugin state (the one
process-wide record, of the register-hook failures already logged, only keeps a failure from
being logged again by the next manager). A plugin that keeps state is a class: an entry point
naming a class (``slack = "sts_slack.plugin:SlackPlugin"``) gets one instance per manager, so
each scheduler has its own. A failing hook is reported in one line naming the
plugin, the hook and the file and line in the plugin that failed; the traceback follows at DEBUG.
"""

from __future__ import annotations

import inspect
import logging
import os
import weakref
from collections.abc import Iterable, Mapping
from importlib import metadata
from typing import Any, TypeVar

import attrs
import pluggy
from pluggy import HookImpl

from sts_core import hookspecs
from sts_core.errors import PluginError, STSError
from sts_core.tracebacks import innermost_location
from sts_core.wording import did_you_mean, one_of, short_repr

log = logging.getLogger("sts.plugins")
T = TypeVar("T")

ENTRY_POINT_GROUP = "sts"
DISABLE_ENV = "STS_DISABLE_PLUGINS"
REGISTRATION_HOOKS = (
    "register_triggers",
    "register_task_types",
    "register_backends",
    "register_brokers",
    "register_config_sections",
    "register_commands",
    "register_alert_options",
)


@attrs.define
class PluginInfo:
    """What ``sts plugins`` shows about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    status: str = "enabled"  # enabled | disabled | failed
    error: str | None = None
    hooks: list[str] = attrs.field(factory=list)
    provides: list[str] = attrs.field(factory=list)


@attrs.frozen
class Registration:
    """One thing a plugin registered, with the plugin's name for error messages."""

    name: str
    value: Any
    plugin: str
    extra: Mapping[str, Any] = attrs.field(factory=dict)


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``STS_DISABLE_PLUGINS`` (comma or space separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return [part for part in raw.replace(",", " ").split() if part]


class DuplicateRegistration(PluginError):
    """Two plugins registered the same name; ``plugin`` is the second one."""

    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin


class PluginManager:
    """Discovers, loads and calls plugins for one scheduler (or one CLI command)."""

    def __init__(
        self,
        disable: Iterable[str] = (),
        *,
        entry_points: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        disable_from_env: bool = True,
    ) -> None:
        self._disable = set(disable) | (set(disabled_from_env()) if disable_from_env else set())
        self._use_entry_points = entry_points
        self._extra = list(plugins)
        self._pm: pluggy.PluginManager | None = None
        self._infos: dict[str, PluginInfo] = {}
        self._registries: dict[str, dict[str, Registration]] = {}
        self._listing = False  # plugin_infos() shows failures itself: they are not logged meanwhile
        self._configs: list[Any] = []  # every configure() call, replayed to late registrations
        self._classes: dict[str, type] = {}  # plugin name -> the class its instance was made from

    # -- loading ----------------------------------------------------------------------------

    @property
    def pm(self) -> pluggy.PluginManager:
        """The underlying pluggy manager, loading plugins on first use."""
        if self._pm is None:
            self._pm = self._load()
        return self._pm

    def _load(self) -> pluggy.PluginManager:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        if self._use_entry_points:
            for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
                self._load_entry_point(pm, entry_point)
        for name, plugin in self._extra:
            self._register(pm, name, plugin, PluginInfo(name=name, distribution=None))
        return pm

    def _load_entry_point(self, pm: pluggy.PluginManager, entry_point: metadata.EntryPoint) -> None:
        dist = entry_point.dist
        info = PluginInfo(
            name=entry_point.name,
            distribution=dist.metadata["Name"] if dist else None,
            version=dist.version if dist else None,
        )
        if entry_point.name in self._infos:
            other = self._infos[entry_point.name]
            info.status, info.error = "failed", (
                f"entry point name {entry_point.name!r} is also used by {other.distribution}"
            )
            self._infos[f"{entry_point.name} ({info.distribution})"] = info
            return
        self._infos[entry_point.name] = info
        if entry_point.name in self._disable or (info.distribution in self._disable):
            info.status = "disabled"
            return
        try:
            plugin = entry_point.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the rest down
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r could not be loaded: %s", entry_point.name, info.error)
            return
        self._register(pm, entry_point.name, plugin, info)

    def _register(self, pm: pluggy.PluginManager, name: str, plugin: object, info: PluginInfo) -> object | None:
        """Register ``plugin`` (a module, an object, or a class to instantiate) under ``name``;
        returns what was registered, None when it failed."""
        self._infos[name] = info
        try:
            if isinstance(plugin, type):  # a plugin class: one instance per manager, so its state is per scheduler
                self._classes[name], plugin = plugin, plugin()
            pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - a failing constructor, or pluggy validation naming the hook
            info.status, info.error = "failed", f"{type(exc).__name__}: {exc}"
            log.warning("plugin %r could not be registered: %s", name, info.error)
            return None
        info.hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())
        return plugin

    def register(self, name: str, plugin: object) -> None:
        """Add a plugin module, object or class at run time (tests, embedded applications)."""
        self._extra.append((name, plugin))
        if self._pm is not None:
            registered = self._register(self._pm, name, plugin, PluginInfo(name=name))
            self._registries.clear()
            for impl in self._pm.hook.configure.get_hookimpls():
                if impl.plugin is registered:
                    for config in self._configs:
                        _configure_one(impl, config)

    def plugin_infos(self) -> list[PluginInfo]:
        """Every discovered plugin, enabled or not, sorted by name."""
        self.pm  # noqa: B018 - loads plugins
        self._listing = True
        try:
            for kind in REGISTRATION_HOOKS:
                try:
                    self._registry(kind)
                except DuplicateRegistration as exc:  # listed, not raised: `sts plugins` must still work
                    info = self._infos.setdefault(exc.plugin, PluginInfo(name=exc.plugin))
                    info.status, info.error = "failed", str(exc)
        finally:
            self._listing = False
        return sorted(self._infos.values(), key=lambda info: info.name)

    def instance_of(self, cls: type[T]) -> T | None:
        """The plugin object of class ``cls`` registered with this manager (any one, if several
        are), or None: how a plugin class's module finds its instance for a scheduler
        (``scheduler.plugins.instance_of(...)``)."""
        return next((plugin for plugin in self.pm.get_plugins() if isinstance(plugin, cls)), None)

    # -- registrations ------------------------------------------------------------------------

    def _registry(self, hook_name: str) -> dict[str, Registration]:
        registry = self._registries.get(hook_name)
        if registry is not None:
            return registry
        registry = {}
        kind = hook_name.removeprefix("register_")
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            # What a plugin registers counts only if its hook returns normally.
            added = self._registrations_of(impl, kind, registry)
            if added is None:
                continue
            registry.update(added)
            info = self._infos.get(impl.plugin_name)
            if info is not None:
                info.provides.extend(f"{kind}:{name}" for name in added if f"{kind}:{name}" not in info.provides)
        self._registries[hook_name] = registry
        return registry

    def _registrations_of(
        self, impl: HookImpl, kind: str, registry: dict[str, Registration]
    ) -> dict[str, Registration] | None:
        plugin_name = impl.plugin_name
        added: dict[str, Registration] = {}

        def register(name: str, value: Any, *extra: Any, **kw: Any) -> None:
            other = registry.get(name) or added.get(name)
            if other is not None:
                raise DuplicateRegistration(
                    f"{kind[:-1].replace('_', ' ')} {name!r} is registered by both plugin {other.plugin!r} and "
                    f"plugin {plugin_name!r}; disable one of them (plugins.disable or {DISABLE_ENV})",
                    plugin=plugin_name,
                )
            added[name] = Registration(name, value, plugin_name, {"args": extra, **kw})

        try:
            call_hook_impl(impl, register=register)
        except DuplicateRegistration:
            raise
        except Exception as exc:  # noqa: BLE001 - attribute the failure to its plugin
            hook = HookCall(plugin_name, impl)
            info = self._infos.setdefault(plugin_name, PluginInfo(name=plugin_name))
            info.status, info.error = "failed", f"register_{kind} failed {hook.describe(exc)}"
            # Every plugin manager of the process (the CLI may build more than one) finds the
            # same failure: it is logged once, by the first.
            # Keyed by the class of a plugin instantiated here: each manager has its own instance.
            reported_as = self._classes.get(plugin_name, impl.plugin)
            if not self._listing and _first_report(reported_as, f"register_{kind}"):
                hook.log_failure(log, logging.WARNING, exc)
            return None
        return added

    def triggers(self) -> dict[str, Registration]:
        """Trigger kinds by name (value: a ``TriggerFactory``)."""
        return self._registry("register_triggers")

    def task_types(self) -> dict[str, Registration]:
        """Task types by name (value: a ``TaskType``)."""
        return self._registry("register_task_types")

    def backends(self) -> dict[str, Registration]:
        """Backends by name (value: a ``BackendFactory``)."""
        return self._registry("register_backends")

    def brokers(self) -> dict[str, Registration]:
        """Brokers by name (value: a ``BrokerFactory``), used in place of a backend's own."""
        return self._registry("register_brokers")

    def config_sections(self) -> dict[str, Registration]:
        """Config sections by name (value: defaults; ``extra['validate']`` optional)."""
        return self._registry("register_config_sections")

    def commands(self) -> dict[str, Registration]:
        """Extra CLI commands by name (value: help text; extra: add_arguments, handler)."""
        return self._registry("register_commands")

    def alert_options(self) -> dict[str, Registration]:
        """Names a task may use under its ``alerts`` option (value: the validator)."""
        return self._registry("register_alert_options")

    def lookup(self, kind: str, name: str) -> Registration:
        """The registration of ``name`` in ``kind`` ("trigger", "task type", "backend", "broker").

        Raises ``PluginError`` naming the installed ones, with a "did you mean", and the
        plugin that failed to load if one might have provided it.
        """
        registry = {
            "trigger": self.triggers,
            "task type": self.task_types,
            "backend": self.backends,
            "broker": self.brokers,
        }[kind]()
        if name in registry:
            return registry[name]
        message = f"unknown {kind} {short_repr(name)}{did_you_mean(name, registry)}; installed: {one_of(registry)}"
        failed = [info for info in self._infos.values() if info.status != "enabled"]
        if failed:
            message += "; not loaded: " + ", ".join(
                f"{info.name} ({info.status}{': ' + info.error if info.error else ''})" for info in failed
            )
        raise PluginError(message)

    # -- lifecycle and events -------------------------------------------------------------------

    def configure(self, config: Any) -> None:
        """Give every plugin the config (historic hook: late registrations get it too).

        A plugin rejects its section by raising an ``STSError`` (say ``ConfigError``), which
        propagates; any other exception becomes a ``PluginError`` naming the plugin and the
        file and line in it that failed (the traceback is logged at DEBUG).
        """
        self._configs.append(config)
        for impl in self.pm.hook.configure.get_hookimpls():
            _configure_one(impl, config)

    def switched_off(self, config: Any) -> frozenset[str]:
        """Plugins switched off in ``config``: those whose config section has an ``enabled`` key
        set to false. They are still configured (their section is checked), but get no events
        and no ``scheduler_started``/``scheduler_stopping``/``scheduler_stopped`` calls, so they
        cost nothing."""
        return frozenset(
            registration.plugin
            for name, registration in self.config_sections().items()
            if isinstance(registration.value, Mapping)
            and "enabled" in registration.value
            and config.get(f"{name}.enabled", registration.value["enabled"]) is False
        )

    async def scheduler_started(self, scheduler: Any) -> None:
        """Call ``scheduler_started`` on every plugin, awaiting async implementations."""
        await self._call_lifecycle("scheduler_started", scheduler)

    async def scheduler_stopping(self, scheduler: Any) -> None:
        """Call ``scheduler_stopping`` on every plugin, awaiting async implementations."""
        await self._call_lifecycle("scheduler_stopping", scheduler)

    async def scheduler_stopped(self, scheduler: Any) -> None:
        """Call ``scheduler_stopped`` on every plugin, awaiting async implementations."""
        await self._call_lifecycle("scheduler_stopped", scheduler)

    async def _call_lifecycle(self, hook_name: str, scheduler: Any) -> None:
        # Per scheduler: several schedulers may share this manager with different configs.
        config = getattr(scheduler, "config", None)
        off = self.switched_off(config) if config is not None else frozenset()
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in off:
                continue
            try:
                result = call_hook_impl(impl, scheduler=scheduler)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - one plugin's failure must not stop the others
                HookCall(impl.plugin_name, impl).log_failure(log, logging.ERROR, exc)

    def event_listeners(self, off: frozenset[str] = frozenset()) -> list[HookCall]:
        """The ``handle_event`` implementations, prepared once for the event path; each is called
        as ``listener(event=..., scheduler=...)``. Plugins in ``off`` (switched off in the
        scheduler's config, see ``switched_off``) are left out."""
        return [
            HookCall(impl.plugin_name, impl)
            for impl in self.pm.hook.handle_event.get_hookimpls()
            if impl.plugin_name not in off
        ]


@attrs.frozen
class HookCall:
    """One plugin's implementation of one hook, and how to report its failures: naming the
    plugin and the hook, with the file and line in the plugin's own code that failed."""

    plugin_name: str
    impl: HookImpl

    @property
    def hook_name(self) -> str:
        """The hook's name (``handle_event``, ``register_triggers``, ...)."""
        return self.impl.opts.get("specname") or self.impl.function.__name__

    def __call__(self, **arguments: Any) -> Any:
        """Call the implementation (see ``call_hook_impl``)."""
        return call_hook_impl(self.impl, **arguments)

    def describe(self, error: BaseException) -> str:
        """``at file:line: Type: message``, the file and line being the innermost frame of
        ``error`` in the plugin's own package (left out when no frame is)."""
        package = (getattr(self.impl.function, "__module__", None) or "").partition(".")[0]
        where = innermost_location(error, [package]) if package else None
        return f"{f'at {where}: ' if where else ''}{type(error).__name__}: {error}"

    def log_failure(self, logger: logging.Logger, level: int, error: BaseException, detail: str = "") -> None:
        """Log ``error`` as one line naming the plugin, the hook (and ``detail``) and where it
        failed; the whole traceback is added when ``logger`` logs DEBUG."""
        logger.log(
            level,
            "plugin %r failed in %s%s %s",
            self.plugin_name,
            self.hook_name,
            f" ({detail})" if detail else "",
            self.describe(error),
            exc_info=error if logger.isEnabledFor(logging.DEBUG) else None,
        )


#: Registration-hook failures already logged in this process: plugin (or plugin class) -> hook names.
_reported: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()


def _first_report(plugin: object, hook_name: str) -> bool:
    try:
        hooks = _reported.setdefault(plugin, set())
    except TypeError:  # not weak-referenceable: report every time rather than keep it alive
        return True
    if hook_name in hooks:
        return False
    hooks.add(hook_name)
    return True


def _configure_one(impl: HookImpl, config: Any) -> None:
    try:
        call_hook_impl(impl, config=config)
    except STSError:
        raise
    except Exception as exc:
        hook = HookCall(impl.plugin_name, impl)
        log.debug("plugin %r failed in configure", impl.plugin_name, exc_info=exc)
        raise PluginError(f"plugin {impl.plugin_name!r} failed in configure {hook.describe(exc)}") from exc


def call_hook_impl(impl: HookImpl, **arguments: Any) -> Any:
    """Call one hook implementation with the arguments it names, as pluggy does: an
    implementation may take fewer arguments than the spec (hooks only ever gain arguments)."""
    return impl.function(*(arguments[name] for name in impl.argnames))

