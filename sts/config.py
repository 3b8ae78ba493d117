"""Configuration: ``Config()`` loads the packaged defaults; ``Config.from_yaml(path)`` a file."""

from sts_core.config import Config

__all__ = ["Config"]
