"""A task's own Slack options: the ``slack`` entry of its ``alerts`` option.

Accepted forms (in a task file)::

    alerts: {slack: false}                       # no Slack alerts for this task
    alerts: {slack: {enabled: false}}            # the same
    alerts: {slack: {webhook: data-team}}        # route to slack.webhooks.data-team
    alerts: {slack: {alert_on: {retry: true}}}   # change which kinds alert, for this task only
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import attrs

from sts.plugin import did_you_mean, one_of
from sts_slack.config import KINDS, YAML_ON

_KEYS = ("enabled", "webhook", "alert_on")


@attrs.frozen
class TaskOptions:
    """What one task asks of the Slack plugin."""

    enabled: bool = True
    webhook: str | None = None
    alert_on: Mapping[str, bool] = attrs.field(factory=dict)

    def wants(self, kind: str, defaults: Mapping[str, bool]) -> bool:
        """Whether an alert of ``kind`` is sent for this task."""
        return self.enabled and bool(self.alert_on.get(kind, defaults.get(kind, False)))


DEFAULT_OPTIONS = TaskOptions()


def validate_task_options(value: Any, webhook_names: Collection[str] | None) -> list[tuple[str, str]]:
    """Problems with ``alerts.slack`` of a task, key paths relative to it.

    ``webhook_names`` are the configured webhooks; None when the plugin has not seen the
    config (then a webhook name is checked when an alert is sent, and an unknown one falls
    back to the default webhook with a warning).
    """
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, Mapping):
        return [("", f"expected true, false or a mapping with {', '.join(_KEYS)}, got {value!r}")]
    problems: list[tuple[str, str]] = []
    for key, item in value.items():
        if key is True:
            problems.append(("on", YAML_ON))
        elif key not in _KEYS:
            problems.append((str(key), f"unknown option{did_you_mean(str(key), _KEYS)}; expected {one_of(_KEYS)}"))
        elif key == "enabled" and not isinstance(item, bool):
            problems.append(("enabled", f"expected true or false, got {item!r}"))
        elif key == "webhook":
            problems.extend(_webhook_problems(item, webhook_names))
        elif key == "alert_on":
            problems.extend(_alert_on_problems(item))
    return problems


def _webhook_problems(name: Any, known: Collection[str] | None) -> list[tuple[str, str]]:
    if not isinstance(name, str) or not name:
        return [("webhook", f"expected the name of a webhook in slack.webhooks, got {name!r}")]
    if known is not None and name not in known:
        return [("webhook", f"unknown webhook {name!r}{did_you_mean(name, known)}; configured: {one_of(known)} "
                            "(define it under slack.webhooks)")]
    return []


def _alert_on_problems(value: Any) -> list[tuple[str, str]]:
    if not isinstance(value, Mapping):
        return [("alert_on", f"expected a mapping of alert kinds to true/false, got {value!r}")]
    problems = []
    for kind, flag in value.items():
        if kind not in KINDS:
            problems.append((f"alert_on.{kind}", f"unknown alert kind{did_you_mean(str(kind), KINDS)}; "
                                           f"expected one of {one_of(KINDS)}"))
        elif not isinstance(flag, bool):
            problems.append((f"alert_on.{kind}", f"expected true or false, got {flag!r}"))
    return problems


def parse_task_options(value: Any) -> TaskOptions:
    """The options in ``alerts.slack`` (already validated; anything unexpected is ignored)."""
    if value is None or value is True:
        return DEFAULT_OPTIONS
    if value is False:
        return TaskOptions(enabled=False)
    if not isinstance(value, Mapping):
        return DEFAULT_OPTIONS
    on = value.get("alert_on")
    return TaskOptions(
        enabled=value.get("enabled", True) is not False,
        webhook=value.get("webhook") if isinstance(value.get("webhook"), str) else None,
        alert_on={k: v for k, v in on.items() if k in KINDS and isinstance(v, bool)} if isinstance(on, Mapping) else {},
    )
