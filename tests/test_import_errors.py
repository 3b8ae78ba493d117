"""A task's module that fails to import is reported with the file and line that failed, once per
batch of tasks (not once per task that uses it), and is imported once per batch."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sts_core.functions import FunctionRegistry, import_callable
from sts_core.plugins import PluginManager
from sts_core.task import Task
from sts_core.validation import check_tasks


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Writes a module with a fresh name on ``sys.path``; returns (name, its path as messages show it)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)

    def write(source: str) -> tuple[str, str]:
        name = f"user_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        return name, f"{name}.py"

    return write


def function_problems(tasks: list[Task]) -> list[tuple[int, str]]:
    problems = check_tasks(tasks, plugins=PluginManager(), resolve_function=FunctionRegistry().resolve)
    return [(index, problem.message) for index, problem in problems if problem.key_path == "function"]


def lookup_error(path: str) -> str:
    with pytest.raises(LookupError) as caught:
        import_callable(path)
    return str(caught.value)


def test_a_syntax_error_names_the_file_and_line(write_module):
    name, file = write_module("def ok():\n    pass\n\ndef f(:\n    pass\n")
    assert lookup_error(f"{name}:f") == (
        f"importing module {name!r} for '{name}:f' failed at {file}:4: SyntaxError: invalid syntax"
    )


def test_an_exception_at_import_names_the_innermost_line_in_the_users_module(write_module):
    name, file = write_module("def load():\n    return {}['key']\n\nSETTINGS = load()\n\ndef f():\n    pass\n")
    assert lookup_error(f"{name}:f") == (
        f"importing module {name!r} for '{name}:f' failed at {file}:2: KeyError: 'key'"
    )


def test_a_missing_import_inside_the_users_module_names_its_line(write_module):
    name, file = write_module("import os\nimport no_such_module_for_sts_tests\n")
    assert lookup_error(f"{name}:f") == (
        f"importing module {name!r} for '{name}:f' failed at {file}:2: "
        "ModuleNotFoundError: No module named 'no_such_module_for_sts_tests'"
    )


def test_a_module_that_does_not_exist_has_no_location():
    assert lookup_error("no_such_module_for_sts_tests:f") == (
        "cannot import module 'no_such_module_for_sts_tests' for 'no_such_module_for_sts_tests:f': "
        "No module named 'no_such_module_for_sts_tests'"
    )


def test_a_broken_module_is_imported_and_reported_once_per_batch(write_module, tmp_path):
    counter = tmp_path / "imports"
    name, file = write_module(f"open({str(counter)!r}, 'a').write('x')\nraise RuntimeError('no database')\n")
    tasks = [Task(f"t{i}", function=f"{name}:f{i}", every="1m") for i in range(8)]
    problems = function_problems(tasks)
    assert [index for index, _ in problems] == list(range(8))
    first, *others = (message for _, message in problems)
    assert first == f"importing module {name!r} for '{name}:f0' failed at {file}:2: RuntimeError: no database"
    assert others == [
        f"module {name!r} for '{name}:f{i}' failed to import: see the error reported for the first task that uses it"
        for i in range(1, 8)
    ]
    assert counter.read_text() == "x"
    function_problems(tasks)  # the next batch (a reload) imports it again: it may have been fixed
    assert counter.read_text() == "xx"


def test_a_module_fixed_between_batches_is_found(write_module, tmp_path):
    name, _ = write_module("raise RuntimeError('not yet')\n")
    task = Task("t", function=f"{name}:f", every="1m")
    assert function_problems([task])
    (tmp_path / f"{name}.py").write_text("def f():\n    pass\n")
    os.utime(tmp_path / f"{name}.py", (0, 2_000_000_000))  # a new mtime, whatever the clock's resolution
    assert function_problems([task]) == []
