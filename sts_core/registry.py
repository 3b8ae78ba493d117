"""Signatures of the ``register`` callbacks the registration hooks receive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sts_core.interfaces import BackendFactory, BrokerFactory, TaskType, TriggerFactory


class RegisterTrigger(Protocol):
    def __call__(self, name: str, factory: TriggerFactory) -> None: ...


class RegisterTaskType(Protocol):
    def __call__(self, name: str, task_type: TaskType) -> None: ...


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
