"""The hook specifications: the only way the kernel talks to capabilities.

Every registration hook receives a ``register`` callback (nothing to merge, no
``firstresult``): a plugin calls it once per thing it provides. Registration hooks are
synchronous and free of side effects, so ``sts plugins`` and ``sts validate`` can call them.
Hooks are only ever extended: an argument once added is never removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from sts_core.config import Config
    from sts_core.events import Event
    from sts_core.registry import (
        RegisterAlertOptions,
        RegisterBackend,
        RegisterBroker,
        RegisterCommand,
        RegisterConfigSection,
        RegisterTaskType,
        RegisterTrigger,
    )
    from sts_core.schedulerview import SchedulerView

PROJECT = "sts"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_triggers(register: RegisterTrigger) -> None:
    """Register trigger kinds: ``register(name, factory, options=())``.

    Called once per plugin manager, lazily. ``factory(spec, timezone)`` builds a
    ``sts.plugin.Trigger`` from plain data such as ``{"kind": "interval",
    "every": 30.0}``, raising ``ValueError`` with what was expected when the spec is invalid.
    ``options`` (``sts.plugin.Option``) are task options that select this kind: a task
    with ``every: 30s`` has the spec ``{"kind": "interval", "every": 30.0}``. ``Task`` converts
    and checks them when it is created.

    .. versionchanged:: 0.4 ``options`` added.
    """


@hookspec
def register_task_types(register: RegisterTaskType) -> None:
    """Register task types: ``register(name, task_type, options=())``; see
    ``sts.plugin.TaskType``.

    ``options`` (``sts.plugin.Option``) are the task options the type reads, such as
    ``function`` for ``python``: ``Task`` converts and checks them when it is created, and they
    are read as attributes of the task (``task.function``). The type's ``validate`` says, when
    the task is added, which of them it needs and which it refuses.

    .. versionchanged:: 0.4 ``options`` added.
    """


@hookspec
def register_backends(register: RegisterBackend) -> None:
    """Register backends: ``register(name, factory)``; ``factory(config, clock)`` returns a
    ``sts.plugin.Backend`` (a Store and a Broker)."""


@hookspec
def register_brokers(register: RegisterBroker) -> None:
    """Register brokers: ``register(name, factory)``; ``factory(config, clock)`` returns a
    ``sts.plugin.Broker``.

    A broker registered here delivers runs in place of the backend's own when the config's
    ``broker`` key names it, while the backend (``scheduler_backend``) keeps the store: say,
    tasks and history in Redis and delivery through RabbitMQ.

    .. versionadded:: 0.3
    """


@hookspec
def register_config_sections(register: RegisterConfigSection) -> None:
    """Register a config section: ``register(section, defaults, validate=None)``.

    ``defaults`` is a mapping merged under the user's values; ``validate(section_values)``
    returns a list of ``(key_path, message)`` problems (empty when valid).
    """


@hookspec
def register_commands(register: RegisterCommand) -> None:
    """Register ``sts`` subcommands: ``register(name, help, add_arguments, handler)``.

    ``add_arguments(parser)`` adds argparse options; ``handler(args, config)`` returns the
    exit status.
    """


@hookspec
def register_alert_options(register: RegisterAlertOptions) -> None:
    """Register what a task may say to an alerting plugin: ``register(name, validate)``.

    A task's ``alerts`` option maps such names to plugin-specific values, for example
    ``alerts: {slack: {webhook: data-team}}`` to route a task's alerts or ``{slack: false}`` to
    silence them. ``validate(value)`` returns a list of ``(key_path, message)`` problems, key
    paths relative to ``alerts.<name>`` (empty when valid). A task naming an unregistered
    ``alerts`` key is rejected with a "did you mean" before anything is stored.

    .. versionadded:: 0.2
    """


@hookspec(historic=True)
def configure(config: Config) -> None:
    """Read and check this plugin's config section. Historic: late registrations get it too."""


@hookspec
def scheduler_started(scheduler: SchedulerView) -> Awaitable[None] | None:
    """The scheduler's loops have started: start the plugin's servers and threads.

    May be a coroutine function; it is awaited on the scheduler's event loop. ``scheduler`` is
    read through ``sts.plugin.SchedulerView``; it is the ``AsyncTaskScheduler`` itself, so a
    plugin that manages tasks (a REST API) may call its documented methods on that loop.
    """


@hookspec
def scheduler_stopping(scheduler: SchedulerView) -> Awaitable[None] | None:
    """The scheduler is stopping: stop what ``scheduler_started`` started. May be async."""


@hookspec
def scheduler_stopped(scheduler: SchedulerView) -> Awaitable[None] | None:
    """The scheduler has stopped: its runs are over and every event was delivered to
    ``handle_event``. Flush and close what must outlive the runs (an alert sender, say). May
    be async; ``stop()`` waits for it, so keep it bounded.

    .. versionadded:: 0.2
    """


@hookspec
def handle_event(event: Event, scheduler: SchedulerView) -> None:
    """React to an event (``sts.plugin.Event`` and its subclasses) emitted by ``scheduler``.

    Called off the engine's path, in the scheduler's event thread, in order of emission. An
    exception is logged with the plugin's name and changes nothing else; a slow
    implementation delays other listeners, never runs. Must be synchronous. An
    implementation may leave out ``scheduler``; it tells apart the schedulers of one process.
    From this thread, read only ``scheduler.id``, ``.config``, ``.clock``, ``.plugins``,
    ``.running``, ``.shared_backend`` and ``.health()``: the coroutines of
    ``sts.plugin.SchedulerView`` belong to the scheduler's event loop.

    .. versionchanged:: 0.2 ``scheduler`` added.
    """
