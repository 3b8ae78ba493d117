"""W6 start-up: the wall time of a command-line tool's help, every plugin installed.

    python -m workloads.w6_startup SYSTEM

SYSTEM is ``sts --help``, ``sts plugins``, ``celery --help``, ``rq --help`` or
``dramatiq --help``, run from this environment's bin directory. Prints ``{"ms"}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SYSTEMS = ("sts --help", "sts plugins", "celery --help", "rq --help", "dramatiq --help")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("system", choices=SYSTEMS)
    args = parser.parse_args()
    program, *rest = args.system.split()
    command = [str(Path(sys.executable).with_name(program)), *rest]
    # As installed from wheels, where pip compiles every module: bytecode may be cached (this machine sets
    # PYTHONDONTWRITEBYTECODE, which left the editable STS sources compiling on every start while the
    # peers' wheels came compiled), and one untimed run first caches it.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    started = time.perf_counter()
    # No timeout: with one, subprocess polls the child in steps of up to 50 ms, which shows in the numbers.
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))


if __name__ == "__main__":
    main()
