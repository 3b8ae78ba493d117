"""From events to messages: which events alert, for which task, to which webhook, and
whether the throttle lets them through. Runs on the kernel's event thread, so it only decides
and hands messages to ``submit`` (the sender's queue); nothing here waits."""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sts.plugin import Task
from sts.plugin import events as ev
from sts_slack.config import DEFAULT_WEBHOOK, SlackSettings
from sts_slack.messages import Style, missed_alert, recovered_alert, run_alert, summary_alert
from sts_slack.options import DEFAULT_OPTIONS, TaskOptions, parse_task_options
from sts_slack.recovery import RecoveryTracker
from sts_slack.sender import Outgoing
from sts_slack.throttle import Summary, Throttle

log = logging.getLogger("sts.slack")
#: How many (run id, kind) pairs are remembered to drop a repeated event (a worker lost after
#: recording an outcome has its events emitted again); the oldest are forgotten first.
SEEN_LIMIT = 4096
#: ``RunSkipped.run.reason`` of a run skipped because a parent failed starts with this.
UPSTREAM_FAILED = "upstream failed"


def kind_of(event: ev.Event) -> str | None:
    """The alert kind of ``event`` (see ``sts_slack.config.KINDS``), or None."""
    if isinstance(event, ev.RunFailed):
        return "failure"
    if isinstance(event, ev.RunRetrying):
        return "timeout" if event.run.hit_timeout else "retry"
    if isinstance(event, ev.RunSkipped):
        return "skipped" if (event.run.reason or "").startswith(UPSTREAM_FAILED) else None
    if isinstance(event, ev.FireMissed):
        return "missed"
    if isinstance(event, ev.RunLost):
        return "lost"
    return None


class Alerter:
    """Turns events into ``Outgoing`` messages for ``submit``."""

    def __init__(
        self,
        settings: SlackSettings,
        style: Style,
        submit: Callable[[Outgoing], None],
    ) -> None:
        self.settings = settings
        self.style = style
        self.submit = submit
        self.throttle = Throttle(settings.throttle)
        self.recovery = RecoveryTracker()
        #: ``alerts`` of each task seen, for events that carry no task (a poison run or a lost
        #: worker of a task the emitting process does not know). Dropped at ``TaskRemoved``.
        self._options: dict[str, TaskOptions] = {}
        self._tasks: dict[str, Task] = {}
        #: (run id, kind) of the alerts already handled, at most ``SEEN_LIMIT``, oldest first.
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    # -- events --------------------------------------------------------------------------------------

    def handle(self, event: ev.Event) -> None:
        """React to one event (called on the kernel's event thread)."""
        self._send_summaries(self.throttle.due(event.time))
        if isinstance(event, ev.TaskAdded):
            self._remember(event.task)
            return
        if isinstance(event, ev.TaskRemoved):
            self._forget(event.task_name)
            return
        # Run events and FireMissed carry the task's definition when the emitting process knows
        # it (a missed fire or a poison run may be the first this process hears of a task).
        if isinstance(event, (ev.RunEvent, ev.FireMissed)) and event.task is not None:
            self._remember(event.task)
        if isinstance(event, ev.RunSucceeded):
            self._on_success(event)
            return
        kind = kind_of(event)
        if kind is None:
            return
        if isinstance(event, ev.FireMissed):
            self._alert(kind, event.task_name, event.time, None, lambda: missed_alert(event, self.style),
                        f"{event.missed_count} fire(s) missed")
            return
        assert isinstance(event, ev.RunEvent)
        run = event.run
        if self._repeated(run.id, kind):
            return
        task = event.task or self._tasks.get(run.task_name)
        error = f"{run.error_type}: {run.error_message}" if run.error_type else (run.error_message or run.reason)
        sent = self._alert(kind, run.task_name, event.time, run.id,
                           lambda: run_alert(kind, run, task, event.time, self.style), error)
        if kind == "failure":
            self.recovery.failed(run.task_name, event.time, error, announced=sent)

    def tick(self, now: datetime) -> None:
        """Send the throttle summaries due at ``now`` (the sender thread calls this while idle)."""
        self._send_summaries(self.throttle.due(now))

    def flush(self, now: datetime) -> None:
        """Send every pending throttle summary now (at shutdown)."""
        self._send_summaries(self.throttle.flush(now))

    # -- decisions ------------------------------------------------------------------------------------

    def options_for(self, task_name: str) -> TaskOptions:
        """The task's own options (the defaults for a task never seen)."""
        return self._options.get(task_name, DEFAULT_OPTIONS)

    def _alert(
        self, kind: str, task: str, time: datetime, run_id: str | None, build: Callable[[], Mapping[str, Any]],
        detail: str | None,
    ) -> bool:
        """Send one alert unless switched off or throttled; True when it was queued."""
        options = self.options_for(task)
        if not options.wants(kind, self.settings.alert_on):
            return False
        key = (task, kind)
        webhook = options.webhook or DEFAULT_WEBHOOK
        admitted, previous = self.throttle.admit(key, time, detail, route=webhook)
        if previous is not None:
            self._send_summaries([previous])
        if not admitted:
            log.debug("slack: %s alert for task %s throttled (run %s)", kind, task, run_id)
            return False
        self._queue(webhook, build(), f"{kind} alert for task {task}")
        return True

    def _on_success(self, event: ev.RunSucceeded) -> None:
        name = event.run.task_name
        episode = self.recovery.succeeded(name, event.time)
        if episode is None or not episode.announced:
            return
        options = self.options_for(name)
        if not options.wants("recovered", self.settings.alert_on) or self._repeated(event.run.id, "recovered"):
            return
        # Never throttled: a recovery is what tells the channel it can stop worrying.
        webhook = options.webhook or DEFAULT_WEBHOOK
        self._queue(webhook, recovered_alert(event.run, episode, self.style), f"recovery message for task {name}")

    def _send_summaries(self, summaries: list[Summary]) -> None:
        for summary in summaries:
            task, kind = summary.key  # type: ignore[misc]
            webhook = summary.route or DEFAULT_WEBHOOK
            payload = summary_alert(task, kind, summary, self.settings.throttle, self.style,
                                    self.recovery.last_success(task) if kind == "failure" else None)
            self._queue(webhook, payload, f"throttle summary ({summary.suppressed} {kind}) for task {task}")

    def _queue(self, webhook: str, payload: Mapping[str, Any], label: str) -> None:
        url = self.settings.url_of(webhook)
        if url is None:  # the webhook was removed from the config after the task was stored
            log.warning("slack: webhook %r is not configured any more; the %s goes to the default webhook",
                        webhook, label)
            webhook, url = DEFAULT_WEBHOOK, self.settings.webhook_url
        if url is None:
            log.warning("slack: no webhook URL configured; the %s is not sent", label)
            return
        self.submit(Outgoing(webhook, url, payload, label))

    def _repeated(self, run_id: str, kind: str) -> bool:
        key = (run_id, kind)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)
        return False

    # -- tasks ----------------------------------------------------------------------------------------

    def _remember(self, task: Task) -> None:
        known = self._tasks.get(task.name)
        if known is not None and known.version > task.version:
            return  # a late event about an older version
        self._tasks[task.name] = task
        value: Any = task.alerts.get("slack") if isinstance(task.alerts, Mapping) else None
        self._options[task.name] = parse_task_options(value)

    def _forget(self, name: str) -> None:
        self._tasks.pop(name, None)
        self._options.pop(name, None)
        self.recovery.forget(name)
