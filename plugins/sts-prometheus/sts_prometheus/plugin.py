"""Hook implementations of the ``prometheus`` plugin.

``scheduler_started`` starts an exporter for each scheduler whose config says
``prometheus.enabled: true`` (``sts run``, ``sts scheduler`` and ``sts worker`` all start one);
``scheduler_stopping`` stops its sampling, ``scheduler_stopped`` its server (freeing the port);
``handle_event`` feeds events to it. The exporters are kept by the ``PrometheusPlugin`` instance
of the scheduler's plugin manager, never in a module global.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sts.plugin import Event, RegisterConfigSection, SchedulerView, hookimpl
from sts_prometheus.config import DEFAULTS, Settings, validate_section

if TYPE_CHECKING:
    from sts_prometheus.exporter import Exporter


def exporter_for(scheduler: SchedulerView) -> Exporter | None:
    """The running exporter of ``scheduler`` (``.url``, ``.address``, ``.metrics``), or None when
    the plugin is not enabled for it, it could not listen, or it is stopped."""
    plugin = scheduler.plugins.instance_of(PrometheusPlugin)
    return plugin.exporter(scheduler.id) if plugin is not None else None


class PrometheusPlugin:
    """The ``prometheus`` plugin. The entry point names this class, so each plugin manager (each
    scheduler, by default) has its own instance; schedulers sharing a manager each have their
    own exporter in it, by scheduler id."""

    def __init__(self) -> None:
        self._exporters: dict[str, Exporter] = {}

    def exporter(self, scheduler_id: str) -> Exporter | None:
        """The running exporter of the scheduler with this id, or None."""
        return self._exporters.get(scheduler_id)

    @hookimpl
    def register_config_sections(self, register: RegisterConfigSection) -> None:
        """Provide the ``prometheus`` section (enabled, address, sample_interval, process_metrics, buckets)."""
        register("prometheus", dict(DEFAULTS), validate=validate_section)

    @hookimpl
    async def scheduler_started(self, scheduler: SchedulerView) -> None:
        """Serve the scheduler's metrics when ``prometheus.enabled``; a port in use is logged, not raised."""
        settings = Settings.from_config(scheduler.config)
        if not settings.enabled or scheduler.id in self._exporters:
            return
        from sts_prometheus.exporter import Exporter  # prometheus_client: only when metrics are served

        exporter = Exporter(scheduler, settings)
        if exporter.start():
            self._exporters[scheduler.id] = exporter

    @hookimpl
    async def scheduler_stopping(self, scheduler: SchedulerView) -> None:
        """Stop sampling; ``/metrics`` stays up while the runs in flight finish."""
        exporter = self._exporters.get(scheduler.id)
        if exporter is not None:
            await exporter.stop_sampling()

    @hookimpl
    async def scheduler_stopped(self, scheduler: SchedulerView) -> None:
        """Stop serving once the scheduler has stopped and its last events are counted; the port is free afterwards."""
        exporter = self._exporters.pop(scheduler.id, None)
        if exporter is not None:
            await exporter.stop()

    @hookimpl
    def handle_event(self, event: Event, scheduler: SchedulerView) -> None:
        """Update the metrics of the scheduler that emitted ``event`` (never blocks)."""
        exporter = self._exporters.get(scheduler.id)
        if exporter is not None:
            exporter.handle(event)
