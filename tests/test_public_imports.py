"""The import paths the README documents (``sts.*``) give the kernel's classes."""

from __future__ import annotations

import sts.errors
from sts_core import errors


def test_every_error_the_readme_names_imports_from_sts_errors():
    assert set(sts.errors.__all__) == {name for name in dir(errors) if name.endswith("Error")}
    for name in sts.errors.__all__:
        assert getattr(sts.errors, name) is getattr(errors, name)


def test_task_validation_error_imports_beside_task():
    from sts.task import Task, TaskValidationError

    try:
        Task("x", function="json:dumps", every=3, retries=-1)
    except TaskValidationError as exc:
        assert "retries" in str(exc)
    else:
        raise AssertionError("Task accepted retries=-1")


def test_the_scheduler_errors_import_beside_the_schedulers():
    from sts.scheduler import SchedulerStateError, TaskExistsError, TaskNotFoundError

    assert (SchedulerStateError, TaskExistsError, TaskNotFoundError) == (
        errors.SchedulerStateError, errors.TaskExistsError, errors.TaskNotFoundError)
