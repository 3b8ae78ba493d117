"""Hook implementations of the ``slack`` plugin.

The entry point names the class ``SlackPlugin``, so each plugin manager (each scheduler, by
default) has its own instance: the section ``configure`` read, which checks tasks'
``alerts.slack`` options, is that scheduler's. Schedulers sharing one manager share its
instance, which keeps one ``Instance`` (alerter and sender) per scheduler, keyed by the
scheduler's id, so each alerts with its own config. Tests and embedded applications may
register their own instance (``PluginManager(entry_points=False, plugins=[("slack",
SlackPlugin(...))])``).

Lifecycle of an instance: it is built from ``scheduler.config`` at ``scheduler_started``, which
starts its sender thread (or at an event of a running scheduler, should one come first).
``scheduler_stopped`` (the runs are over and every event has been handled, so the failures of
runs that ended during the shutdown grace are in) closes and drops it: pending throttle
summaries are sent and what is queued is delivered within ``slack.shutdown_grace``. Events of
a scheduler that has no instance and is not running (never started, or already stopped) are
ignored, so no instance is built that nothing would close. ``configure`` only reads the
section for checking tasks' ``alerts.slack`` options and registers the webhook URLs as secrets
for log redaction.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from sts.plugin import Config, Event, RegisterAlertOptions, RegisterConfigSection, format_duration, hookimpl
from sts_slack.config import DEFAULTS, KINDS, SlackSettings, settings_from_config, validate_section
from sts_slack.options import validate_task_options
from sts_slack.redaction import SECRETS, install_filters, redact_url

if TYPE_CHECKING:
    from sts_slack.alerter import Alerter
    from sts_slack.sender import Post, Sender

log = logging.getLogger("sts.slack")
#: How often (real seconds, at most) the sender thread looks for throttle summaries that are due.
SUMMARY_CHECK_EVERY = 30.0


@attrs.define
class Instance:
    """The plugin's state for one scheduler."""

    settings: SlackSettings
    alerter: Alerter
    sender: Sender


class SlackPlugin:
    """The Slack alerting plugin. ``post``, ``wait`` and ``host`` are for tests."""

    def __init__(
        self,
        *,
        post: Post | None = None,
        wait: Callable[[float], bool] | None = None,
        host: str | None = None,
        summary_check_every: float = SUMMARY_CHECK_EVERY,
    ) -> None:
        self._post = post
        self._wait = wait
        self._host = host
        self._summary_check_every = summary_check_every
        #: The section ``configure`` last read (for checking tasks' options).
        self.settings: SlackSettings | None = None
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()

    def instance(self, scheduler_id: str) -> Instance | None:
        """The state kept for the scheduler with this id (None unless it is started)."""
        return self._instances.get(scheduler_id)

    # -- registration -----------------------------------------------------------------------------

    @hookimpl
    def register_config_sections(self, register: RegisterConfigSection) -> None:
        """Provide the ``slack`` section (webhook_url, webhooks, alert_on, throttle, ...)."""
        register("slack", _copy(DEFAULTS), validate=validate_section)

    @hookimpl
    def register_alert_options(self, register: RegisterAlertOptions) -> None:
        """Let tasks say ``alerts: {slack: false | {enabled, webhook, alert_on}}``."""
        register("slack", self.validate_task_options)

    def validate_task_options(self, value: Any) -> list[tuple[str, str]]:
        """Problems with a task's ``alerts.slack`` (webhook names checked once configured)."""
        # Names are checked only where Slack is on: a config with it off need not list the webhooks.
        names = self.settings.webhook_names if self.settings is not None and self.settings.enabled else None
        return validate_task_options(value, names)

    # -- lifecycle ----------------------------------------------------------------------------------

    @hookimpl
    def configure(self, config: Config) -> None:
        """Read the ``slack`` section: for checking tasks' options, and to mask its URLs in logs."""
        self.settings = settings_from_config(config)
        if self.settings.enabled:
            SECRETS.add(self.settings.secrets())
            install_filters()

    @hookimpl
    async def scheduler_started(self, scheduler: Any) -> None:
        """Start the sender thread of ``scheduler``'s instance."""
        instance = self._instance(scheduler, build=True)
        if instance is None:
            return
        alerter, clock = instance.alerter, scheduler.clock
        throttle = instance.settings.throttle  # no throttle, no summaries: the check may be rare
        every = min(self._summary_check_every, max(throttle / 4, 1.0)) if throttle else self._summary_check_every
        instance.sender.start(on_idle=lambda: alerter.tick(clock.now()), idle_every=every)
        log.info("%s", startup_line(instance.settings))

    @hookimpl
    async def scheduler_stopped(self, scheduler: Any) -> None:
        """Send pending throttle summaries, deliver what is queued within ``slack.shutdown_grace``
        (plus at most one request timeout) and stop the sender thread."""
        with self._lock:
            instance = self._instances.pop(scheduler.id, None)
        if instance is not None:
            import asyncio  # here: `sts --help` and `sts plugins` load this module and never need asyncio

            await asyncio.to_thread(self._close, scheduler, instance)

    @staticmethod
    def _close(scheduler: Any, instance: Instance) -> None:
        instance.alerter.flush(scheduler.clock.now())
        instance.sender.close(instance.settings.shutdown_grace)

    # -- events ---------------------------------------------------------------------------------------

    @hookimpl
    def handle_event(self, event: Event, scheduler: Any) -> None:
        """Decide whether ``event`` alerts and queue the message; never blocks."""
        running = bool(getattr(scheduler, "running", False))
        instance = self._instance(scheduler, build=running)
        if instance is not None:
            instance.alerter.handle(event)
        elif not running:
            log.debug("slack: %s of scheduler %s ignored: the scheduler is not running", event.kind, scheduler.id)

    def _instance(self, scheduler: Any, *, build: bool) -> Instance | None:
        """``scheduler``'s instance (None when off), built from its config if there is none yet
        and ``build`` is true."""
        key = scheduler.id
        instance = self._instances.get(key)
        if instance is not None:
            return instance
        if not build:
            return None
        with self._lock:
            instance = self._instances.get(key)
            if instance is None:
                instance = self._build(settings_from_config(scheduler.config), scheduler.config)
                if instance is not None:
                    self._instances[key] = instance
        return instance

    def _build(self, settings: SlackSettings, config: Any) -> Instance | None:
        if not settings.enabled:
            return None
        SECRETS.add(settings.secrets())
        install_filters()
        # slack_sdk and the message builder: only when Slack is switched on
        from sts_slack.alerter import Alerter
        from sts_slack.messages import Style
        from sts_slack.sender import Sender

        retries = config.get("retries")
        style = Style(
            host=self._host or socket.gethostname(),
            dashboard_url=settings.dashboard_url,
            traceback_lines=settings.traceback_lines,
            username=settings.username,
            icon=settings.icon,
            default_retries=retries if isinstance(retries, int) else None,
        )
        sender = Sender(
            timeout=settings.timeout,
            max_attempts=settings.max_attempts,
            backoff=settings.backoff,
            max_retry_after=settings.max_retry_after,
            max_queue=settings.max_queue,
            post=self._post,
            wait=self._wait,
        )
        return Instance(settings, Alerter(settings, style, sender.submit), sender)


def startup_line(settings: SlackSettings) -> str:
    """What a started scheduler logs once about Slack: where alerts go (webhook hosts only, never
    the secret path), which alerts are on and the throttle."""
    webhooks = [f"{name} {redact_url(settings.url_of(name))}" for name in settings.webhook_names
                if settings.url_of(name)]
    kinds = [kind for kind in KINDS if settings.alert_on.get(kind)]
    throttle = format_duration(settings.throttle) if settings.throttle else "off"
    return (f"Slack alerts to webhook {', '.join(webhooks) or 'none'} on {', '.join(kinds) or 'nothing'} "
            f"(throttle {throttle})")


def _copy(defaults: dict[str, Any]) -> dict[str, Any]:
    return {key: dict(value) if isinstance(value, dict) else value for key, value in defaults.items()}

