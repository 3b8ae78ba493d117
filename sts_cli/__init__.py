"""The ``sts`` command line, an application on top of the kernel (``sts_core``).

It uses the kernel as any program would; the kernel never imports it. ``main`` is the
``sts`` console script (``python -m sts_cli`` runs it too).
"""

from sts_cli.cli import main

__all__ = ["main"]
