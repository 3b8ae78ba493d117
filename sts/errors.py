"""The errors STS raises on purpose."""

from sts_core.errors import (
    ConfigError,
    PluginError,
    SchedulerStateError,
    STSError,
    TaskExistsError,
    TaskNotFoundError,
    TaskValidationError,
    ValidationError,
)

__all__ = [
    "ConfigError",
    "PluginError",
    "STSError",
    "SchedulerStateError",
    "TaskExistsError",
    "TaskNotFoundError",
    "TaskValidationError",
    "ValidationError",
]
