"""The kernel's layout: the command line is an application on the kernel, and every kernel module
says what its one job is."""

from __future__ import annotations

import ast
from pathlib import Path

from test_plugin_api import _imported_modules, _is_under

ROOT = Path(__file__).resolve().parent.parent
KERNEL = ROOT / "sts_core"
def _kernel_files(*, with_testing: bool = True) -> list[Path]:
    return [path for path in sorted(KERNEL.rglob("*.py"))
            if with_testing or (KERNEL / "testing") not in path.parents]


def _docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def test_the_kernel_never_imports_the_command_line() -> None:
    # sts_core.testing may: its run_cli runs the command line for plugin tests.
    offending = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _kernel_files(with_testing=False)
        for line, module in _imported_modules(path)
        if _is_under(module, "sts_cli")
    ]
    assert not offending, "sts_core must not import sts_cli, the application built on it:\n" + "\n".join(offending)


def test_every_kernel_module_opens_with_the_job_it_does() -> None:
    silent = [
        str(path.relative_to(ROOT)) for path in _kernel_files()
        if path.name != "__init__.py" and not _docstring(path).strip()
    ]
    assert not silent, "each kernel module starts with a docstring saying its one job:\n" + "\n".join(silent)
