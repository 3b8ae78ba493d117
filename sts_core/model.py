"""The names the engine files import from the domain model, which now lives in ``sts_core.task``
(``Task``), ``sts_core.run`` (``Run`` and its ids) and ``sts_core.converters``.

Kept only so that the engine files (engine, firing, working, redelivery, interfaces, scheduler,
plans) and the backend contract suites, which are being reshaped elsewhere, keep importing from
here; this module goes when they import from the modules above. Import from those in new code.
"""

from sts_core.run import FAILED_STATES, Run, RunState, fire_id, new_run_id, recordable_result
from sts_core.task import Task

__all__ = ["FAILED_STATES", "Run", "RunState", "Task", "fire_id", "new_run_id", "recordable_result"]
