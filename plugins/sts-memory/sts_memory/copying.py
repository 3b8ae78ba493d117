"""Copy a ``Run`` quickly: the store and the broker keep snapshots, never the caller's object."""

from __future__ import annotations

import operator
from copy import deepcopy

import attrs

from sts.plugin import Run

_INIT_FIELDS = tuple(field.name for field in attrs.fields(Run) if field.init)
_POSITIONAL = all(not field.kw_only for field in attrs.fields(Run) if field.init)
_values = operator.attrgetter(*_INIT_FIELDS)


def copy_run(run: Run) -> Run:
    """A new ``Run`` equal field by field to ``run`` (a shallow copy, but for a list or dict result).

    Calling the constructor with positional values is about seven times faster than
    ``attrs.evolve``, which matters on the engine's path (several copies per run).
    """
    copy = Run(*_values(run)) if _POSITIONAL else attrs.evolve(run)
    if isinstance(copy.result, list | dict):  # a returned JSON value: its readers must not change the record
        copy.result = deepcopy(copy.result)
    return copy
