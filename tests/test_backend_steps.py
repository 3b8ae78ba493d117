"""The engine asks a backend nothing it has not declared: every capability it uses is a member of
the role Protocols in ``sts_core.interfaces``, and ``sts_core.steps`` chooses once how to take
each step."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from sts_core.steps import BackendContractError, BackendSteps
from sts_core.testing import FakeClock, StubConfig
from sts_memory.backend import build_backend

KERNEL = Path(__file__).resolve().parents[1] / "sts_core"
#: The engine's modules: they take backend steps only through ``BackendSteps`` and the Protocols.
ENGINE_MODULES = ("engine.py", "firing.py", "working.py", "redelivery.py", "outcomes.py", "activefires.py",
                  "synccalls.py", "inflight.py", "outages.py", "scheduler.py", "backends.py")
BACKEND_WORDS = ("store", "broker", "backend", "steps")


def _probes(path: Path) -> list[str]:
    """``file:line: source`` of each getattr/hasattr call on something named like a backend part."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and node.args and any(word in ast.unparse(node.args[0]).lower() for word in BACKEND_WORDS)):
            found.append((node.lineno, f"sts_core/{path.name}:{node.lineno}: {ast.unparse(node)}"))
    return [probe for _, probe in sorted(found)]


def test_the_engine_probes_no_backend_with_getattr_or_hasattr() -> None:
    probes = [probe for name in ENGINE_MODULES for probe in _probes(KERNEL / name)]
    assert not probes, ("the engine probes the backend; declare the capability in sts_core/interfaces.py and "
                        "take it through sts_core/steps.py instead:\n" + "\n".join(probes))


def test_the_probe_finder_finds_a_probe(tmp_path: Path) -> None:
    module = tmp_path / "engine.py"
    module.write_text("x = 1\nok = getattr(error, 'remote_type', None)\n"
                      "many = getattr(self.broker, 'consume_many', None)\n")
    assert _probes(module) == ["sts_core/engine.py:3: getattr(self.broker, 'consume_many', None)"]


class _Half:
    """A backend whose store is the memory store and whose broker lacks members."""

    def __init__(self) -> None:
        backend = build_backend(StubConfig({}), FakeClock())
        self.store = backend.store
        self.broker = object()


def test_a_broker_lacking_mandatory_members_is_a_clear_error_naming_them() -> None:
    with pytest.raises(BackendContractError, match=r"broker \(builtins.object\) does not implement "
                       r"sts_core.interfaces.Broker: it lacks ack, close, consume, counts_may_skip, .*durable"):
        BackendSteps(_Half(), FakeClock(), lambda what, step: step())


def test_the_memory_backend_takes_its_atomic_steps_and_no_fallback() -> None:
    backend = build_backend(StubConfig({}), FakeClock())
    steps = BackendSteps(backend, FakeClock(), lambda what, step: step())
    assert steps.claim_and_dispatch == backend.claim_and_enqueue
    assert steps.finish_run == backend.record_and_ack
    assert (steps.shared, steps.durable, steps.starts_once, steps.outbox, steps.watches) == (
        False, False, False, False, False)
    assert steps.consume_many == backend.broker.consume_many  # the worker loop takes batches
