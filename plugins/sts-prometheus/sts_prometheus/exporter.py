"""One scheduler's exporter: its metrics, the listener that feeds them, the sampler and the server."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from importlib import metadata

from sts.plugin import SchedulerView, is_loopback
from sts.plugin import events as ev
from sts_prometheus.config import Settings
from sts_prometheus.listener import MetricsListener
from sts_prometheus.metrics import Metrics, build_metrics
from sts_prometheus.sampler import Sampler
from sts_prometheus.server import MetricsServer

log = logging.getLogger("sts.prometheus")


class Exporter:
    """Exposes one scheduler's metrics at ``url`` between ``start`` and ``stop``."""

    def __init__(self, scheduler: SchedulerView, settings: Settings) -> None:
        self.scheduler_id: str = scheduler.id
        self.settings = settings
        backend = str(scheduler.config.get("scheduler_backend") or "unknown")
        self.metrics: Metrics = build_metrics(
            settings, health=scheduler.health, backend=backend, version=_sts_version()
        )
        self.listener = MetricsListener(self.metrics)
        broker = str(scheduler.config.get("broker") or backend)  # a broker plugin in place of the backend's own
        self.sampler = Sampler(scheduler, self.metrics, interval=settings.sample_interval, broker_label=broker)
        self.server = MetricsServer(self.metrics.registry, settings.host, settings.port)
        self.active = False

    @property
    def address(self) -> tuple[str, int]:
        """The bound ``(host, port)``: with ``prometheus.address`` port 0, the port the system chose."""
        return self.server.address

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        return self.server.url

    def start(self) -> bool:
        """Listen and start sampling (on the running loop). False, after one error log line, when
        the address cannot be used: the scheduler runs on without metrics."""
        try:
            self.server.start()
        except OSError as exc:
            log.error("%s", _bind_error(self.settings.address, exc))
            return False
        self.sampler.start()
        self.active = True
        log.info("Prometheus metrics at %s (prometheus.address %s)", self.url, self.settings.address)
        if not is_loopback(self.address[0]):
            log.warning("prometheus.address %s is reachable from other hosts: /metrics has no "
                        "authentication (task names are visible); put it behind a firewall or proxy",
                        self.settings.address)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            log.warning("PROMETHEUS_MULTIPROC_DIR is set, but sts-prometheus does not aggregate "
                        "processes: each process serves its own metrics at its own prometheus.address")
        return True

    async def stop_sampling(self) -> None:
        """Stop sampling (the backend closes soon); ``/metrics`` is still served, and events
        still counted, while the runs in flight finish."""
        await self.sampler.stop()

    async def stop(self) -> None:
        """Stop sampling and serving; the port is free when this returns."""
        self.active = False
        await self.sampler.stop()
        await asyncio.to_thread(self.server.stop)

    def handle(self, event: ev.Event) -> None:
        """Apply an event of this exporter's scheduler (ignored once stopped)."""
        if self.active:
            self.listener.handle(event)


def _bind_error(address: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        why = "the port is already in use (another sts process or exporter on this host?)"
    else:
        why = exc.strerror or str(exc)
    return (
        f"prometheus.address {address}: cannot serve metrics there: {why}. This process runs on without "
        f"exposing metrics. Give each process on a host its own address, "
        f"e.g. STS_PROMETHEUS__ADDRESS=127.0.0.1:9465 sts worker"
    )


def _sts_version() -> str:
    try:
        return metadata.version("SimpleTaskScheduler")
    except metadata.PackageNotFoundError:
        return "unknown"

