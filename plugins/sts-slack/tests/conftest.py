"""Fixtures for the Slack plugin's tests: a fake Slack and a configured, started plugin."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sts_core.testing import StubConfig
from sts_slack.plugin import SlackPlugin
from sts_slack.testing import FakeSlack

# ``sts_slack_helpers`` (next to this file) must be importable from the test modules.
TESTS_DIR = str(Path(__file__).parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from sts_slack_helpers import HOST, FakeScheduler, Harness  # noqa: E402 - needs the path above


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack webhook endpoint on loopback."""
    with FakeSlack() as server:
        yield server
    assert server.violations == [], "payloads Slack would refuse"


@pytest.fixture
def make_plugin(slack: FakeSlack) -> Iterator[Callable[..., Harness]]:
    """``make_plugin(**slack_section)``: a started plugin posting to ``slack``; waits between
    retries are recorded, not slept."""
    made: list[Harness] = []

    def make(*, retries: int | None = 2, summary_check_every: float = 30.0, **section: Any) -> Harness:
        waits: list[float] = []
        plugin = SlackPlugin(wait=lambda seconds: waits.append(seconds) or False, host=HOST,
                             summary_check_every=summary_check_every)
        values = {"enabled": True, "webhook_url": slack.url(), "backoff": "10ms", "timeout": "2s", **section}
        config = StubConfig({"slack": values, "retries": retries})
        plugin.configure(config)
        harness = Harness(plugin, FakeScheduler(config), waits)
        asyncio.run(plugin.scheduler_started(harness.scheduler))
        made.append(harness)
        return harness

    yield make
    for harness in made:
        instance = harness.plugin.instance(harness.scheduler.id)
        if instance is not None:
            instance.sender.close(2.0)
