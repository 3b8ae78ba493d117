"""The errors STS raises on purpose."""

from sts_core.errors import (
    BackendError,
    BackendUnavailableError,
    ConfigError,
    PluginError,
    SchedulerStateError,
    STSError,
    TaskExistsError,
    TaskLoadError,
    TaskNotFoundError,
    TaskStillRunningError,
    TaskValidationError,
    ValidationError,
)

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "ConfigError",
    "PluginError",
    "STSError",
    "SchedulerStateError",
    "TaskExistsError",
    "TaskLoadError",
    "TaskNotFoundError",
    "TaskStillRunningError",
    "TaskValidationError",
    "ValidationError",
]
