"""Scraping helpers for the prometheus plugin tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One ``/metrics`` response: its text, and its samples by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name{labels}`` (exactly those labels), or None when absent."""
        return self.samples.get((name, frozenset(labels.items())))

    def labelled(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """Every sample named ``name``, by label set."""
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def counted(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        """The samples named ``name`` that are not 0 (every known task has its run series at 0
        from the start)."""
        return {labels: value for labels, value in self.labelled(name).items() if value}


def scrape_text(url: str) -> str:
    """GET ``url`` and return the body (text format)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def scrape(url: str) -> Scrape:
    """Scrape from a thread (the server runs in this process: never block the loop)."""
    return Scrape(await asyncio.to_thread(scrape_text, url))


async def scrape_until(url: str, ready: Callable[[Scrape], bool], timeout: float = 5.0) -> Scrape:
    """Scrape until ``ready(scrape)``: events reach the metrics on the event thread, a moment
    after the engine is idle. Fails after ``timeout`` real seconds with the last scrape shown."""
    give_up = time.monotonic() + timeout
    while True:
        result = await scrape(url)
        if ready(result):
            return result
        if time.monotonic() > give_up:
            raise AssertionError(f"metrics not as expected after {timeout}s:\n{result.text}")
        await asyncio.sleep(0.01)
