"""``python -m sts_cli``: the ``sts`` command."""

from sts_cli.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
