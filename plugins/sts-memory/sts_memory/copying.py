"""Hold a ``Run`` as a tuple of its values, and make a new ``Run`` from one: the store and the
broker keep such snapshots, never the caller's object."""

from __future__ import annotations

import operator
from copy import deepcopy
from typing import Any

import attrs

from sts.plugin import Run

_INIT_FIELDS = tuple(field.name for field in attrs.fields(Run) if field.init)
_POSITIONAL = all(not field.kw_only for field in attrs.fields(Run) if field.init)
_values = operator.attrgetter(*_INIT_FIELDS)
_STATE = _INIT_FIELDS.index("state")
_RESULT = _INIT_FIELDS.index("result")
#: Where a ``run_record`` tuple holds the run's id, its task name and its state (a plain string).
RECORD_ID = _INIT_FIELDS.index("id")
RECORD_TASK_NAME = _INIT_FIELDS.index("task_name")
RECORD_STATE = _STATE
_AFTER_STATE = slice(_STATE + 1, len(_INIT_FIELDS))
_RUN_STATE = type(attrs.fields(Run).state.default)  # the RunState enum
# A state's plain string, and back. A RunState member hashes and compares as its value, so both
# tables answer for a member and for its string alike.
_STATE_VALUE = {state: state.value for state in _RUN_STATE}
_STATE_MEMBER = {state.value: state for state in _RUN_STATE}


def run_record(run: Run) -> tuple[Any, ...]:
    """``run``'s fields as a tuple of plain values, its state as a plain string.

    Such a tuple holds nothing the garbage collector follows (strings, numbers, None, datetimes),
    so the collector stops tracking it the first time it looks at it, and a dictionary holding
    only such tuples is never tracked at all: a full collection costs nothing per record kept.
    A list or dict result (a returned JSON value) is copied, and keeps its record tracked.
    """
    values = _values(run)
    record = (*values[:_STATE], _STATE_VALUE[values[_STATE]], *values[_AFTER_STATE])
    if isinstance(record[_RESULT], list | dict):
        return (*record[:_RESULT], deepcopy(record[_RESULT]), *record[_RESULT + 1:])
    return record


def record_run(record: tuple[Any, ...]) -> Run:
    """A new ``Run`` from a ``run_record`` tuple (a list or dict result copied, so readers cannot change it)."""
    values = list(record)
    values[_STATE] = _STATE_MEMBER[values[_STATE]]
    if isinstance(values[_RESULT], list | dict):
        values[_RESULT] = deepcopy(values[_RESULT])
    return Run(*values) if _POSITIONAL else Run(**dict(zip(_INIT_FIELDS, values, strict=True)))
