"""The plugin API: everything an STS plugin imports from the kernel, in one module.

A plugin is a module of hook implementations (``@hookimpl``) found through the ``sts``
entry-point group, or a class of them when it keeps state (instantiated once per plugin
manager, so per scheduler); see CONTRIBUTING.md ("Write a task-type plugin"). It imports the
kernel only from here (its tests may also use ``sts_core.testing`` and the user API ``sts.scheduler``,
``sts.task``, ``sts.config``), so the kernel may move its code without breaking plugins. The
code lives in ``sts_core``; this module only re-exports, as ``pytest`` does ``_pytest``.

Importing it is cheap: no plugin is loaded and no entry point is scanned. The few names whose
modules cost tens of milliseconds more (YAML config files, the entry-point machinery) are
imported on first use, so a plugin's process that never uses them (the ``python`` task type's
child process, say) does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sts_core import converters, events
from sts_core.addresses import format_address, is_loopback, parse_address, safe_url
from sts_core.clock import Clock, SystemClock
from sts_core.configschema import EXECUTORS
from sts_core.durations import duration_seconds, format_duration, parse_duration
from sts_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    PluginError,
    Problem,
    SchedulerStateError,
    STSError,
    TaskExistsError,
    TaskNotFoundError,
    TaskValidationError,
    ValidationError,
)
from sts_core.events import (
    Event,
    FireMissed,
    RunCancelled,
    RunDuplicate,
    RunEvent,
    RunFailed,
    RunLost,
    RunRetrying,
    RunSkipped,
    RunStarted,
    RunSucceeded,
    SchedulerStarted,
    SchedulerStopping,
    TaskAdded,
    TaskRemoved,
    ThreadAbandoned,
)
from sts_core.functions import FunctionRegistry, import_callable
from sts_core.health import Health
from sts_core.hookspecs import hookimpl
from sts_core.interfaces import (
    AtomicSteps,
    Backend,
    BackendFactory,
    Broker,
    BrokerFactory,
    ConsumesMany,
    CountsQueues,
    Delivery,
    Drains,
    DueFire,
    ExecutionContext,
    Outbox,
    OutputBuffer,
    ReadsTasksByName,
    StartsRunsOnce,
    StopsConsuming,
    Store,
    TaskType,
    Trigger,
    TriggerFactory,
    WatchedStore,
    WatchesAvailability,
)
from sts_core.options import Option, add_plugin, plugin_added
from sts_core.registry import (
    AlertOptionsValidator,
    RegisterAlertOptions,
    RegisterBackend,
    RegisterBroker,
    RegisterCommand,
    RegisterConfigSection,
    RegisterTaskType,
    RegisterTrigger,
    SectionValidator,
)
from sts_core.run import Run, RunState, fire_id, new_run_id
from sts_core.schedulerview import SchedulerView
from sts_core.sections import KeyCheck, check_section, count_check, duration_check
from sts_core.task import MISFIRE_POLICIES, Task, task_from_valid_options, task_keys
from sts_core.tracebacks import task_traceback
from sts_core.wording import did_you_mean, one_of, short_repr, short_text

if TYPE_CHECKING:
    from sts_core.config import Config
    from sts_core.plugins import PluginInfo, PluginManager
    from sts_core.validation import reported_already

#: The names imported on first use (see ``__getattr__``), by the module that defines them.
_ON_FIRST_USE = {
    "Config": "sts_core.config",
    "PluginInfo": "sts_core.plugins",
    "PluginManager": "sts_core.plugins",
    "reported_already": "sts_core.validation",
}


def __getattr__(name: str) -> Any:
    """Import a name of ``_ON_FIRST_USE`` when it is first asked for (PEP 562)."""
    module = _ON_FIRST_USE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [  # noqa: RUF022 - grouped by section (sorted within each), so names added later merge
    # hooks: mark a plugin's hook implementations (the specs are in sts_core/hookspecs.py)
    "hookimpl",
    # registration: the ``register`` callback each ``register_*`` hook receives
    "AlertOptionsValidator",
    "RegisterAlertOptions",
    "RegisterBackend",
    "RegisterBroker",
    "RegisterCommand",
    "RegisterConfigSection",
    "RegisterTaskType",
    "RegisterTrigger",
    "SectionValidator",
    # roles: triggers and task types (typing.Protocol: implement, do not inherit)
    "ExecutionContext",
    "OutputBuffer",
    "TaskType",
    "Trigger",
    "TriggerFactory",
    # roles: backends (a Store and a Broker) and what they hand over
    "Backend",
    "BackendFactory",
    "Broker",
    "BrokerFactory",
    "Delivery",
    "DueFire",
    "Store",
    # ... and the optional capabilities a store, broker or backend may add (sts_core/interfaces.py)
    "AtomicSteps",
    "ConsumesMany",
    "CountsQueues",
    "Drains",
    "Outbox",
    "ReadsTasksByName",
    "StartsRunsOnce",
    "StopsConsuming",
    "WatchedStore",
    "WatchesAvailability",
    # the scheduler as hooks see it
    "Health",
    "SchedulerView",
    # the model: tasks and their runs
    "Run",
    "RunState",
    "Task",
    # task options a trigger kind or task type declares (register(..., options=...))
    "Option",
    "converters",
    "add_plugin",
    "plugin_added",
    "fire_id",
    "new_run_id",
    # task definitions as plain data (for plugins that accept tasks, such as a REST API)
    "EXECUTORS",
    "MISFIRE_POLICIES",
    "task_keys",
    "reported_already",
    "task_from_valid_options",
    # events passed to handle_event (also as the module ``events``)
    "Event",
    "FireMissed",
    "RunCancelled",
    "RunDuplicate",
    "RunEvent",
    "RunFailed",
    "RunLost",
    "RunRetrying",
    "RunSkipped",
    "RunStarted",
    "RunSucceeded",
    "SchedulerStarted",
    "SchedulerStopping",
    "TaskAdded",
    "TaskRemoved",
    "ThreadAbandoned",
    "events",
    # errors plugins raise or catch
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "PluginError",
    "Problem",
    "STSError",
    "SchedulerStateError",
    "TaskExistsError",
    "TaskNotFoundError",
    "TaskValidationError",
    "ValidationError",
    # messages: "did you mean", short values in errors
    "did_you_mean",
    "one_of",
    "short_repr",
    "short_text",
    # config: the Config object and helpers for a plugin's config section
    "Config",
    "KeyCheck",
    "check_section",
    "count_check",
    "duration_check",
    "duration_seconds",
    "format_address",
    "format_duration",
    "is_loopback",
    "parse_address",
    "parse_duration",
    "safe_url",
    # time: one injectable clock (tests use sts_core.testing.FakeClock)
    "Clock",
    "SystemClock",
    # functions: how a task's function is found (a task type's ``resolve_function``), tracebacks
    "FunctionRegistry",
    "import_callable",
    "task_traceback",
    # plugins: the manager (for tests, with the plugins a test names) and what it reports
    "PluginInfo",
    "PluginManager",
]
