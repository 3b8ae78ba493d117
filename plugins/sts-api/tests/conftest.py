"""Fixtures for the api plugin tests: a scheduler serving the API on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# ``sts_api_helpers`` and ``sts_api_jobs`` are imported by name.
TESTS_DIR = str(Path(__file__).parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from sts_api_helpers import RunningApi, running_api  # noqa: E402


@pytest.fixture
def api() -> Iterator[RunningApi]:
    """The API of a running memory-backend scheduler (admin and read tokens, ``sts_api_jobs:*`` allowed)."""
    with running_api() as running:
        yield running
