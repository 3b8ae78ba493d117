"""Signatures of the ``register`` callbacks the registration hooks receive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sts_core.interfaces import BackendFactory, BrokerFactory, TaskType, TriggerFactory
from sts_core.options import Option


class RegisterTrigger(Protocol):
    """``register(name, factory, options=())``: ``options`` are the task options that select this
    trigger kind (``every`` for ``interval``), each a shorthand for ``trigger: {kind: name, ...}``.

    .. versionchanged:: 0.4 ``options`` added.
    """

    def __call__(self, name: str, factory: TriggerFactory, *, options: Sequence[Option] = ()) -> None: ...


class RegisterTaskType(Protocol):
    """``register(name, task_type, options=())``: ``options`` are the task options this type reads
    (``function`` and ``args`` for ``python``), converted and checked when a task is created.

    .. versionchanged:: 0.4 ``options`` added.
    """

    def __call__(self, name: str, task_type: TaskType, *, options: Sequence[Option] = ()) -> None: ...


class RegisterBackend(Protocol):
    def __call__(self, name: str, factory: BackendFactory) -> None: ...


class RegisterBroker(Protocol):
    def __call__(self, name: str, factory: BrokerFactory) -> None: ...


SectionValidator = Callable[[Mapping[str, Any]], Sequence[tuple[str, str]]]


class RegisterConfigSection(Protocol):
    def __call__(self, name: str, defaults: Mapping[str, Any], *, validate: SectionValidator | None = None) -> None: ...


AlertOptionsValidator = Callable[[Any], Sequence[tuple[str, str]]]


class RegisterAlertOptions(Protocol):
    def __call__(self, name: str, validate: AlertOptionsValidator) -> None: ...


class RegisterCommand(Protocol):
    def __call__(
        self,
        name: str,
        help: str,
        *,
        add_arguments: Callable[[Any], None],
        handler: Callable[[Any, Any], int],
    ) -> None: ...
