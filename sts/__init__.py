"""STS, the Simple Task Scheduler: the documented import paths.

``from sts.scheduler import TaskScheduler``, ``from sts.task import Task`` and
``from sts.config import Config``; plugins import the kernel from ``sts.plugin``. The code lives
in ``sts_core``; these modules only re-export.
"""

from sts_core import __version__

__all__ = ["__version__"]
