"""A function to try the REST API with, importable wherever the plugin is installed.

``{"name": "hello", "function": "sts_api.demo:hello", "every": "10s"}`` with
``api.allowed_functions: ["sts_api.demo:*"]`` (see the plugin's README and
``examples/api.yaml``).
"""

from __future__ import annotations


def hello(name: str = "world") -> str:
    """Print a greeting (it lands in the run's output) and return it (the run's result)."""
    message = f"hello, {name}, from a task created through the STS REST API"
    print(message, flush=True)
    return message
