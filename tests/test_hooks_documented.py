"""Every hook has a docstring and a place in CONTRIBUTING.md, and so does every event class.

A hook or event added without documentation fails here, naming what to write.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from sts_core import events, hookspecs

CONTRIBUTING = Path(__file__).parent.parent / "CONTRIBUTING.md"
HOOKS = sorted(name for name, value in vars(hookspecs).items() if hasattr(value, f"{hookspecs.PROJECT}_spec"))
EVENTS = sorted(
    name
    for name, value in vars(events).items()
    if inspect.isclass(value) and issubclass(value, events.Event) and value.__module__ == events.__name__
)


@pytest.fixture(scope="module")
def contributing() -> str:
    return CONTRIBUTING.read_text(encoding="utf-8")


def test_the_hooks_and_events_are_found():
    assert {"register_task_types", "handle_event"} <= set(HOOKS)
    assert {"Event", "RunStarted", "RunSucceeded"} <= set(EVENTS)


@pytest.mark.parametrize("hook", HOOKS)
def test_the_hook_has_a_docstring(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc.strip(), f"hook {hook} in sts_core/hookspecs.py needs a docstring: when it is called, how results add up"


@pytest.mark.parametrize("hook", HOOKS)
def test_the_hook_is_described_in_contributing(contributing, hook):
    assert f"`{hook}`" in contributing, f"CONTRIBUTING.md does not describe the hook `{hook}`"


@pytest.mark.parametrize("event", EVENTS)
def test_the_event_class_is_listed_in_contributing(contributing, event):
    assert f"`{event}`" in contributing, f"CONTRIBUTING.md does not list the event class `{event}`"


@pytest.mark.parametrize("path", ["sts-greeting/pyproject.toml", "sts-greeting/sts_greeting.py"])
def test_the_task_type_example_in_contributing_is_the_tested_fixture(contributing, path):
    source = (Path(__file__).parent / "plugin_fixtures" / path).read_text(encoding="utf-8")
    assert source in contributing, f"the example in CONTRIBUTING.md differs from tests/plugin_fixtures/{path}"
