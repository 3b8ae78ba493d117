"""Helpers shared by the Slack plugin's tests (imported as ``sts_slack_helpers``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import attrs

from sts.plugin import Run, RunState, Task
from sts_core.testing import DEFAULT_START, FakeClock
from sts_slack.plugin import SlackPlugin

T0 = DEFAULT_START
HOST = "test-host"


def job() -> None:
    """A task function for tasks that are never run."""


@attrs.define
class FakeScheduler:
    """What the plugin reads from the scheduler it is started with."""

    config: Any
    clock: FakeClock = attrs.field(factory=FakeClock)
    id: str = "sched-1"
    #: As ``AsyncTaskScheduler.running``: true from just before ``scheduler_started`` until ``stop()``.
    running: bool = True


@attrs.define
class Harness:
    """A configured, started ``SlackPlugin`` fed events by hand, with what it waited for."""

    plugin: SlackPlugin
    scheduler: FakeScheduler
    waits: list[float]

    def emit(self, *events: Any) -> None:
        """Hand ``events`` to the plugin, as the kernel's event thread does."""
        for event in events:
            self.plugin.handle_event(event, self.scheduler)

    @property
    def alerter(self) -> Any:
        """The plugin's alerter for this harness's scheduler."""
        instance = self.plugin.instance(self.scheduler.id)
        assert instance is not None
        return instance.alerter

    def stop(self) -> None:
        """Stop as a scheduler does: throttle summaries are flushed and the queue delivered."""
        self.scheduler.running = False

        async def main() -> None:
            await self.plugin.scheduler_stopped(self.scheduler)

        asyncio.run(main())


def make_task(name: str = "etl", **options: Any) -> Task:
    """A stored task (version 1)."""
    return Task(name, job, every=60, **options).with_version(1)


def make_run(task: str = "etl", state: RunState = RunState.FAILED, **fields: Any) -> Run:
    """A run of ``task`` scheduled at T0 that started 2.5 s late and took 1.5 s."""
    values: dict[str, Any] = {
        "id": f"run-{task}-{state.value}-{fields.get('attempt', 1)}",
        "task_name": task,
        "task_version": 1,
        "scheduled_for": T0,
        "state": state,
        "fire_id": f"{task}@{T0.isoformat()}",
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=2.5),
        "ended_at": T0 + timedelta(seconds=4),
        "duration": 1.5,
        "worker": f"{HOST}:sched-1",
    }
    if state in (RunState.FAILED, RunState.RETRYING):
        values.update(error_type="ValueError", error_message="bad row 7",
                      traceback="Traceback (most recent call last):\n  File \"etl.py\", line 3, in load\n"
                                "ValueError: bad row 7\n")
    values.update(fields)
    return Run(**values)


def headers(payloads: list[Any]) -> list[str]:
    """The header text of each payload."""
    return [p["blocks"][0]["text"]["text"] for p in payloads]


def all_text(payload: Any) -> str:
    """Every text in a payload, joined (for "contains" checks)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "url") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(payload)
    return "\n".join(found)
