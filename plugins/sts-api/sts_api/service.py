"""The task operations behind the endpoints, on one ``AsyncTaskScheduler``, free of HTTP.

Every change stores a new version through ``add_task`` (the kernel's validation, the same as
for task files) after the allowlist has passed it; a rejected change stores nothing. Changes
are made one at a time (one lock per API server), so a read-modify-write such as a ``PATCH``
never loses a concurrent one. ``expected`` (from ``If-Match`` or a ``version`` in the body) makes
a change conditional on the version it was based on: a mismatch is a 412 and changes nothing
(checked after the body, so that an invalid body is a 422 whatever the version).

Run-now and resume start what a task runs, so unless ``api.run_any_task`` is true they apply
the allowlist to the stored task too (403 ``not_allowed``): a shell task from a task file, or a
python task whose function is not listed, cannot be started through the API. Pause and delete
stay unrestricted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import attrs

from sts.plugin import (
    Problem,
    Run,
    Task,
    TaskExistsError,
    TaskNotFoundError,
    TaskValidationError,
    reported_already,
    short_repr,
    task_from_valid_options,
)
from sts_api.allowlist import Allowlist
from sts_api.limits import count_unknown_keys, data_problems, limit_problems, merged, unknown_key_problems
from sts_api.responses import MAX_PROBLEMS, ApiError, invalid, not_found

#: Why runs started through the API say they ran (``Run.reason``).
RUN_REASON = "api"
#: An expected version meaning "any version, as long as the task exists" (``If-Match: *``).
ANY_VERSION = 0


@attrs.frozen
class TaskView:
    """A stored task and when it fires next."""

    task: Task
    next_fire: Any


class TaskService:
    """Lists, creates, changes, pauses, resumes, deletes and runs tasks for the API."""

    def __init__(self, scheduler: Any, allowlist: Allowlist, *, run_any_task: bool = False) -> None:
        self.scheduler = scheduler
        self.allowlist = allowlist
        self.run_any_task = run_any_task
        self._changing = asyncio.Lock()

    # -- reading -----------------------------------------------------------------------------------

    async def list(self) -> list[TaskView]:
        """Every task with its next fire time, sorted by name."""
        return [await self._view(task) for task in await self.scheduler.list_tasks()]

    async def get(self, name: str) -> TaskView:
        """The current version of ``name``; 404 when there is none."""
        return await self._view(await self._require(name))

    async def version(self, name: str, version: int) -> Task:
        """Version ``version`` of task ``name`` as it was stored; 404 when the store no longer has it."""
        task = await self.scheduler.get_task(name, version)
        if task is None:
            raise not_found(f"task {name!r} has no version {version} (unknown task or version, or deleted)")
        return task

    # -- changing ----------------------------------------------------------------------------------

    async def create(self, data: Any) -> TaskView:
        """Store a new task from task-file data; 409 when the name is taken. A ``version`` in the
        body (a task read from the API, say) is checked for shape and otherwise ignored."""
        _body_version(data, None)
        task = await self._build(data)
        async with self._changing:
            try:
                stored = await self._store(task, replace=False)
            except TaskExistsError:
                raise ApiError(409, "exists", f"task {task.name!r} already exists; change it with PUT or "
                                              f"PATCH /tasks/{task.name}") from None
        return await self._view(stored)

    async def replace(self, name: str, data: Any, expected: int | None) -> tuple[TaskView, bool]:
        """Store ``data`` as the next version of ``name`` (or as a new task). Returns the view and
        whether the task was created. An unchanged definition stores nothing."""
        expected = _body_version(data, expected)
        task = await self._build(data, name=name)
        async with self._changing:
            current = await self.scheduler.get_task(name)
            _check_expected(name, current, expected)
            if current is not None and _same(current, task):
                return await self._view(current), False
            stored = await self._store(task, replace=True)
        return await self._view(stored), current is None

    async def patch(self, name: str, patch: Any, expected: int | None) -> TaskView:
        """Merge ``patch`` (RFC 7396: ``null`` removes an option) into the current definition,
        then validate and store the result as a whole."""
        if not isinstance(patch, Mapping):
            raise invalid([Problem("", "expected a JSON object of the options to change, e.g. {\"every\": \"5m\"}")])
        if count_unknown_keys(patch):  # checked here: a null would merge them away
            raise invalid(unknown_key_problems(patch), count=count_unknown_keys(patch))
        expected = _body_version(patch, expected)
        async with self._changing:
            current = await self._require(name)
            task = await self._build(merge_patch(_editable(current), patch), name=name)
            _check_expected(name, current, expected)
            if _same(current, task):
                return await self._view(current)
            stored = await self._store(task, replace=True)
        return await self._view(stored)

    async def set_enabled(self, name: str, enabled: bool, expected: int | None) -> TaskView:
        """Pause (``enabled`` false) or resume a task: a new version when that changes it. Pausing
        works on every task; resuming one the allowlist refuses is 403 (unless ``run_any_task``)."""
        async with self._changing:
            current = await self._require(name)
            _check_expected(name, current, expected)
            if current.enabled is enabled:
                return await self._view(current)
            if enabled:
                self._check_startable(current, "resumed")
            change = self.scheduler.resume_task if enabled else self.scheduler.pause_task
            try:
                stored = await change(name)
            except TaskNotFoundError:  # deleted by another process meanwhile
                raise not_found(f"no task named {name!r}") from None
            except TaskValidationError as exc:
                raise invalid(_relative(name, exc.problems)) from None
        return await self._view(stored)

    async def delete(self, name: str, expected: int | None) -> None:
        """Remove a task (its runs stay in the history); 409 while other tasks name it as a parent."""
        async with self._changing:
            current = await self._require(name)
            _check_expected(name, current, expected)
            try:  # the scheduler refuses to remove a parent, asking the store when it is shared
                await self.scheduler.delete_task(name)
            except TaskValidationError as exc:
                message = "; ".join(p.message for p in exc.problems)
                raise ApiError(409, "in_use", f"task {name!r} {message}") from None

    async def run_now(self, name: str) -> Run:
        """Fire the current version of ``name`` now: the run goes to the workers like a scheduled
        one (``reason`` is ``api``); when ``max_instances`` runs are already active it waits in the
        queue until one ends (``waits_for_instance``). 403 when the allowlist refuses the task
        (unless ``run_any_task``)."""
        self._check_startable(await self._require(name), "run")
        try:
            run = await self.scheduler.fire_now(name, RUN_REASON)
        except TaskNotFoundError:
            raise not_found(f"no task named {name!r}") from None
        return run

    # -- helpers -----------------------------------------------------------------------------------

    async def _build(self, data: Any, *, name: str | None = None) -> Task:
        """A task from task-file data, checked for shape and against the allowlist. When anything
        is wrong, the plugins' checks (trigger, task type, parents) run too, on the valid options,
        so that every problem is reported at once (what runs is not checked when the allowlist
        refuses it); a valid task is checked by ``add_task``."""
        if not isinstance(data, Mapping):
            raise invalid([Problem("", "expected a JSON object of task options, e.g. "
                                       "{\"name\": \"report\", \"function\": \"reports:build\", \"every\": \"1h\"}")])
        data = {key: value for key, value in data.items() if key != "version"}
        if name is not None:
            if "name" in data and data["name"] != name:
                raise invalid([Problem("name", f"expected {name!r} (the name in the path) or no name, "
                                               f"got {short_repr(data['name'])}; a task cannot be renamed")])
            data["name"] = name
        unknown = count_unknown_keys(data)
        if unknown > MAX_PROBLEMS:  # a "did you mean" for each of thousands of keys would block the loop
            raise invalid(unknown_key_problems(data), count=unknown)
        problems = data_problems(data)  # before the kernel's checks: the API's stricter limits name the key
        left_out: frozenset[str] = frozenset()
        try:
            task: Task | None = Task.from_dict(data)
        except TaskValidationError as exc:
            problems = merged(problems, exc.problems)
            task, left_out = task_from_valid_options(data)
        if task is None:
            raise invalid(problems)
        refused = self.allowlist.problems(task)
        problems = [*merged(problems, limit_problems(task)), *refused]
        if problems:
            found = await self.scheduler.check_task(_without_what_runs(task) if refused else task)
            skipped = left_out | {"type"} if refused else left_out
            problems = merged(problems, [p for p in found if not reported_already(p, skipped)])
            error = invalid(problems)
            error.refusal = _refusal(refused) if refused else None
            raise error
        return task

    def _check_startable(self, task: Task, what: str) -> None:
        """403 when ``task`` is one the API could not have created (unless ``run_any_task``)."""
        if self.run_any_task:
            return
        problems = self.allowlist.problems(task)
        if problems:
            first = problems[0]
            raise ApiError(403, "not_allowed",
                           f"task {task.name!r} cannot be {what} through the API: {first.key_path}: {first.message}; "
                           f"the API starts only tasks it could create (api.allowed_task_types, "
                           f"api.allowed_functions, api.allowed_commands, api.allowed_cwds), or every task with "
                           f"api.run_any_task: true",
                           problems=problems[:MAX_PROBLEMS], refusal=_refusal(problems))

    async def _store(self, task: Task, *, replace: bool) -> Task:
        try:
            # The body is the whole definition: `enabled` true in it resumes a paused task.
            return await self.scheduler.add_task(task, replace=replace, keep_paused=False)
        except TaskValidationError as exc:
            raise invalid(_relative(task.name, exc.problems)) from None

    async def _require(self, name: str) -> Task:
        task = await self.scheduler.get_task(name)
        if task is None:
            raise not_found(f"no task named {name!r}")
        return task

    async def _view(self, task: Task) -> TaskView:
        return TaskView(task, await self.scheduler.next_fire_time(task.name))


def _without_what_runs(task: Task) -> Task:
    """``task`` with nothing for its task type to check: a task the allowlist refuses gets its
    trigger, parents and alerts checked, but its function is never imported to check it."""
    return attrs.evolve(task, type="python", function=None, command=None, params={}, args=(), kwargs={})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: ``patch``'s objects merge into ``target``'s, ``null`` removes."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _editable(task: Task) -> dict[str, Any]:
    try:
        return task.to_dict()
    except TaskValidationError:
        raise ApiError(409, "not_editable", f"task {task.name!r} runs a Python callable that has no import path; "
                                            "it can be paused, resumed, run or deleted through the API, "
                                            "not edited") from None


def _body_version(data: Any, expected: int | None) -> int | None:
    """The version a change is based on: ``If-Match``, or else ``version`` in the body."""
    if not isinstance(data, Mapping) or "version" not in data:
        return expected
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise invalid([Problem("version", f"expected the version this change is based on (a whole number "
                                          f">= 1), got {short_repr(version)}")])
    if expected is not None and expected != version:
        raise invalid([Problem("version", f"is {version} but If-Match names version {expected}")])
    return version


def _check_expected(name: str, current: Task | None, expected: int | None) -> None:
    if expected is None:
        return
    if current is None:
        wanted = "any version" if expected == ANY_VERSION else f"version {expected}"
        raise ApiError(412, "version_mismatch", f"task {name!r} does not exist, so it is not at {wanted}")
    if expected != ANY_VERSION and current.version != expected:
        raise ApiError(412, "version_mismatch", f"task {name!r} is at version {current.version}, not {expected}: "
                                                "it was changed meanwhile; read it again and retry",
                       headers={"ETag": f'"{current.version}"'})


def _same(current: Task, task: Task) -> bool:
    return attrs.evolve(current, version=0) == attrs.evolve(task, version=0)


def _refusal(problems: list[Problem]) -> str:
    """Why the allowlist refused a task, for the log: its first problem, and how many more."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"allowlist: {first.key_path}: {first.message}{more}"


def _relative(name: str, problems: list[Problem]) -> list[Problem]:
    """The kernel's problems name the task first (``report.cron``); the API's are relative to it."""
    prefix = name + "."
    return [Problem(p.key_path[len(prefix):] if p.key_path.startswith(prefix) else
                    "" if p.key_path == name else p.key_path, p.message) for p in problems]
