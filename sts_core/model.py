"""The names the engine files import from the domain model, which now lives in ``sts_core.task``
(``Task``), ``sts_core.run`` (``Run`` and its ids) and ``sts_core.converters``.

Kept only so that the files being reshaped on other branches keep working unchanged: the engine
(engine, firing, working, redelivery, interfaces, scheduler, plans, steps), the backend contract
suites in ``sts_core.testing``, ``tests/test_engine.py`` and the benchmarks. This module goes when
they import from the modules above; new code imports from those.
"""

from sts_core.run import FAILED_STATES, Run, RunState, fire_id, new_run_id, recordable_result
from sts_core.task import Task

__all__ = ["FAILED_STATES", "Run", "RunState", "Task", "fire_id", "new_run_id", "recordable_result"]
