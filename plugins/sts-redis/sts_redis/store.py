"""``RedisStore``: tasks with version history, the due index, run history and dependency
progress in Redis, shared by every STS process that names the same server and key prefix.

Costs (n tasks, k due fires): ``next_due_time`` one ZRANGE, ``due_fires`` one
ZRANGEBYSCORE of k, ``claim_fire`` one script, ``record_run`` one script including
retention. Nothing on the scheduler's or the worker's path reads all tasks or all runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sts.plugin import DueFire, Run, RunState, Task, TaskExistsError
from sts_redis import store_scripts as lua
from sts_redis.codec import from_us, run_json, to_json, to_us
from sts_redis.connection import RedisConnection, translate_errors

_LIST_PAGE = 200


def _task_json(task: Task) -> str:
    data = task.to_dict()
    data.pop("version", None)
    return to_json(data)


def _load_task(version: int | str | bytes, text: str | bytes) -> Task:
    data = json.loads(text)
    data["version"] = int(version)
    return Task.from_stored(data)


def _split_current(value: bytes) -> Task:
    version, _, text = value.partition(b":")
    return _load_task(version, text)


#: ``get_tasks`` asks Redis for at most this many tasks in one command.
_GET_TASKS_CHUNK = 10_000


class RedisStore:
    """A ``sts_core.interfaces.Store`` in Redis; ``shared``: other processes see every change.

    ``max_runs_per_task`` (None: unlimited) and ``max_age`` (seconds, None: unlimited) bound
    the run history; ``fire_ttl`` (seconds) is how long an active fire counts towards
    ``max_instances`` without being renewed by its worker's heartbeat.
    """

    shared = True

    def __init__(
        self,
        connection: RedisConnection,
        clock: Any,
        *,
        prefix: str,
        max_runs_per_task: int | None = 1000,
        max_age: float | None = None,
        fire_ttl: float = 3600.0,
    ) -> None:
        self.connection = connection
        self.clock = clock
        self.prefix = prefix
        self.max_runs = max_runs_per_task or 0
        self.max_age_us = None if max_age is None else int(max_age * 1_000_000)
        self.fire_ttl_us = int(fire_ttl * 1_000_000)
        self._watchers: list[Callable[[str | None], None]] = []
        self._due_watchers: list[Callable[[str], None]] = []
        connection.subscribe(f"{prefix}:changes", self._notice)

    async def _call(self, name: str, *args: Any) -> Any:
        return await self.connection.run_script(getattr(lua, name), [self.prefix, *args])

    async def open(self) -> None:
        """Connect (shared with the broker)."""
        await self.connection.open()

    async def close(self) -> None:
        """Disconnect once the broker has closed too."""
        await self.connection.close()

    def watch(self, on_change: Callable[[str | None], None]) -> None:
        """Call ``on_change(name)`` when any process changes task ``name`` (or, without a
        ``watch_due`` watcher, when its next fire becomes the earliest), ``on_change(None)``
        when notices may have been missed."""
        self._watchers.append(on_change)

    @property
    def notices_live(self) -> bool:
        """True while change notices arrive (the listener is subscribed): a watcher that has
        applied every notice it received knows every task as stored."""
        return self.connection.listening

    def watch_due(self, on_due: Callable[[str], None]) -> None:
        """Call ``on_due(name)`` when another process makes task ``name``'s next fire the
        earliest of all (a scheduler sleeping until a later one must look again), instead of
        reporting it as a change of the task."""
        self._due_watchers.append(on_due)

    def _notice(self, message: str | None) -> None:
        if message is None:
            name = None
        elif message.startswith("due:") and self._due_watchers:
            name = message[4:]
            for due_watcher in self._due_watchers:
                due_watcher(name)
            return
        elif message.startswith(("task:", "due:")):
            name = message.partition(":")[2]
        else:
            return
        for watcher in self._watchers:
            watcher(name)

    # -- tasks --------------------------------------------------------------------------------

    @translate_errors
    async def put_task(self, task: Task, *, replace: bool = False) -> Task:
        """Store ``task`` as the next version of its name; ``TaskExistsError`` unless ``replace``."""
        return (await self.put_tasks([task], replace=replace))[0]

    @translate_errors
    async def put_tasks(self, tasks: Sequence[Task], *, replace: bool = False) -> list[Task]:
        """Store several tasks in one script: all or nothing."""
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            duplicate = next(name for name in names if names.count(name) > 1)
            raise ValueError(f"task {duplicate!r} appears more than once in one put_tasks call")
        if not tasks:
            return []
        args: list[Any] = ["1" if replace else "0"]
        for task in tasks:
            args += [task.name, _task_json(task)]
        result = await self._call("PUT_TASKS", *args)
        if int(result[0]) == 0:
            name = result[1].decode() if isinstance(result[1], bytes) else result[1]
            raise TaskExistsError(f"a task named {name!r} already exists; pass replace=True to store a new version")
        return [task.with_version(int(v)) for task, v in zip(tasks, result[1:], strict=True)]

    @translate_errors
    async def get_task(self, name: str, version: int | None = None) -> Task | None:
        """The current task (or one version of it); None when unknown or deleted."""
        client = self.connection.client
        if version is None:
            value = await client.hget(f"{self.prefix}:tasks", name)
            return None if value is None else _split_current(value)
        text = await client.hget(f"{self.prefix}:task_versions:{name}", str(version))
        return None if text is None else _load_task(version, text)

    @translate_errors
    async def get_tasks(self, names: Sequence[str]) -> dict[str, Task]:
        """The current version of each task of ``names`` that is stored, by name (HMGET, in chunks)."""
        found: dict[str, Task] = {}
        names = list(dict.fromkeys(names))
        for start in range(0, len(names), _GET_TASKS_CHUNK):
            chunk = names[start:start + _GET_TASKS_CHUNK]
            values = await self.connection.client.hmget(f"{self.prefix}:tasks", chunk)
            found.update((name, _split_current(value)) for name, value in zip(chunk, values, strict=True)
                         if value is not None)
        return found

    @translate_errors
    async def list_tasks(self) -> list[Task]:
        """The current version of every task, sorted by name."""
        stored = await self.connection.client.hgetall(f"{self.prefix}:tasks")
        tasks = [_split_current(value) for value in stored.values()]
        return sorted(tasks, key=lambda task: task.name)

    @translate_errors
    async def delete_task(self, name: str) -> bool:
        """Remove the task's versions, next fire, dependency progress and active fires; runs stay."""
        return bool(await self._call("DELETE_TASK", name))

    @translate_errors
    async def last_version(self, name: str) -> int:
        """The highest version ever stored under ``name`` (kept after delete), 0 if never."""
        value = await self.connection.client.hget(f"{self.prefix}:task_seq", name)
        return int(value or 0)

    # -- schedule -----------------------------------------------------------------------------

    @translate_errors
    async def set_next_fire(self, name: str, when: datetime | None) -> None:
        """Set (or with None clear) the task's next fire time."""
        if when is None:
            await self.connection.client.zrem(f"{self.prefix}:due", name)
            return
        try:
            us = to_us(when)
        except ValueError:
            raise ValueError(f"next fire of task {name!r}: expected a timezone-aware datetime, got {when!r}") from None
        await self._call("SET_NEXT_FIRE", name, us)

    @translate_errors
    async def get_next_fire(self, name: str) -> datetime | None:
        """The task's next fire time, or None."""
        score = await self.connection.client.zscore(f"{self.prefix}:due", name)
        return None if score is None else from_us(score)

    @translate_errors
    async def next_due_time(self) -> datetime | None:
        """The earliest next fire over all tasks: the first entry of the due index."""
        first = await self.connection.client.zrange(f"{self.prefix}:due", 0, 0, withscores=True)
        return from_us(first[0][1]) if first else None

    @translate_errors
    async def due_fires(self, now: datetime, limit: int) -> list[DueFire]:
        """Up to ``limit`` fires due at or before ``now``, earliest first; nothing is claimed."""
        entries = await self.connection.client.zrangebyscore(
            f"{self.prefix}:due", "-inf", to_us(now), start=0, num=limit, withscores=True
        )
        return [DueFire(name.decode(), from_us(score)) for name, score in entries]

    @translate_errors
    async def claim_fire(self, fire: DueFire, next_fire: datetime | None) -> bool:
        """Compare and set in one script: move the next fire from ``fire.scheduled_for`` to ``next_fire``."""
        following = "" if next_fire is None else to_us(next_fire)
        return bool(await self._call("CLAIM_FIRE", fire.task_name, to_us(fire.scheduled_for), following))

    # -- runs ---------------------------------------------------------------------------------

    @translate_errors
    async def record_run(self, run: Run) -> None:
        """Insert or update the run's record; a new record applies history retention."""
        now = to_us(self.clock.now())
        cutoff = "" if self.max_age_us is None else now - self.max_age_us
        await self._call("RECORD_RUN", run.id, run.task_name, run_json(run), now, self.max_runs, cutoff)

    @translate_errors
    async def start_run(self, run: Run) -> Run | None:
        """Record ``run`` unless its id is recorded already (one script); then return that record."""
        now = to_us(self.clock.now())
        cutoff = "" if self.max_age_us is None else now - self.max_age_us
        existing = await self._call("START_RUN", run.id, run.task_name, run_json(run), now, self.max_runs, cutoff)
        return None if existing is None else Run.from_dict(json.loads(existing))

    @translate_errors
    async def get_run(self, run_id: str) -> Run | None:
        """The run record, or None (unknown or dropped by retention)."""
        text = await self.connection.client.hget(f"{self.prefix}:runs", run_id)
        return None if text is None else Run.from_dict(json.loads(text))

    @translate_errors
    async def list_runs(
        self,
        task_name: str | None = None,
        states: Iterable[RunState] | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Up to ``limit`` runs, newest (most recently first recorded) first."""
        wanted = None if states is None else frozenset(RunState(state) for state in states)
        if limit <= 0:
            return []
        client = self.connection.client
        index = f"{self.prefix}:run_order" if task_name is None else f"{self.prefix}:task_runs:{task_name}"
        found: list[Run] = []
        start = 0
        page = limit if wanted is None else max(limit, _LIST_PAGE)
        while len(found) < limit:
            ids = await client.zrevrange(index, start, start + page - 1)
            if not ids:
                break
            start += len(ids)
            for text in await client.hmget(f"{self.prefix}:runs", ids):
                if text is None:
                    continue  # dropped by retention meanwhile
                run = Run.from_dict(json.loads(text))
                if wanted is None or run.state in wanted:
                    found.append(run)
                    if len(found) >= limit:
                        break
        return found

    # -- dependencies -------------------------------------------------------------------------

    @translate_errors
    async def parent_succeeded(self, child: str, parent: str, required: frozenset[str], token: str) -> bool:
        """Note ``parent``'s success for ``child``; True (and reset) for the one caller that completes ``required``."""
        return bool(await self._call("PARENT_SUCCEEDED", child, parent, token, *sorted(required)))

    @translate_errors
    async def reset_parents(self, child: str) -> None:
        """Forget the child's parent progress."""
        await self.connection.client.delete(f"{self.prefix}:parents:{child}")

    # -- fires in flight ----------------------------------------------------------------------

    @translate_errors
    async def begin_fire(self, name: str, fire_id: str, limit: int) -> bool:
        """Count ``fire_id`` as active unless ``limit`` unexpired fires of ``name`` already are."""
        now = to_us(self.clock.now())
        return bool(await self._call("BEGIN_FIRE", name, fire_id, limit, now, now + self.fire_ttl_us))

    # -- the outbox (a broker outside Redis) -----------------------------------------------------

    @translate_errors
    async def stage_fire(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None
    ) -> str:
        """Claim the fire (if ``claim``), count it under ``limit`` and stage ``run`` (to be
        published for ``at``) in one script: "lost", "staged" or "limited"."""
        now = to_us(self.clock.now())
        entry = json.dumps({"run": run.to_dict(), "at": None if at is None else at.isoformat()})
        args: list[Any] = [run.task_name, run.fire_id, limit, now, now + self.fire_ttl_us, run.id, entry]
        if claim is not None:
            fire, following = claim
            args += [to_us(fire.scheduled_for), "" if following is None else to_us(following)]
        return _STAGE_OUTCOMES[await self._call("STAGE_FIRE", *args)]

    @translate_errors
    async def unstage(self, run_id: str) -> None:
        """The staged run was published: forget it."""
        await self._call("UNSTAGE", run_id)

    @translate_errors
    async def take_stranded(self, staged_before: datetime, limit: int) -> list[tuple[Run, datetime | None]]:
        """Up to ``limit`` runs staged before ``staged_before`` and never unstaged (their scheduler
        died before publishing them), each marked taken now."""
        entries = await self._call("TAKE_STRANDED", to_us(staged_before), to_us(self.clock.now()), limit)
        stranded = []
        for entry in entries:
            data = json.loads(entry)
            at = data.get("at")
            stranded.append((Run.from_dict(data["run"]), None if at is None else datetime.fromisoformat(at)))
        return stranded

    @translate_errors
    async def touch_fire(self, name: str, fire_id: str) -> None:
        """Renew the fire's expiry while its run executes."""
        expiry = to_us(self.clock.now()) + self.fire_ttl_us
        await self.connection.client.zadd(f"{self.prefix}:active:{name}", {fire_id: expiry}, xx=True)

    @translate_errors
    async def end_fire(self, name: str, fire_id: str) -> None:
        """The fire is over."""
        await self.connection.client.zrem(f"{self.prefix}:active:{name}", fire_id)


_STAGE_OUTCOMES = {0: "lost", 1: "staged", 2: "limited"}
