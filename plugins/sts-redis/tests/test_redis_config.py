"""The ``redis`` config section: the shipped example validates, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sts.config import Config
from sts.plugin import ConfigError, PluginManager
from sts_core.testing import FakeClock, StubConfig
from sts_redis.backend import build_backend
from sts_redis.connection import safe_url

EXAMPLE = Path(__file__).resolve().parents[3] / "configs" / "redis.yaml"


def test_the_example_config_validates_with_the_password_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    config = Config.from_yaml(EXAMPLE)
    config.validate_sections(PluginManager())
    assert config.get("scheduler_backend") == "redis"
    assert config.get("redis.url") == "redis://:pw@127.0.0.1:6379/0"
    backend = build_backend(config, FakeClock())  # builds without connecting
    assert backend.store.connection.where == "redis://:***@127.0.0.1:6379/0"


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"url": "http://127.0.0.1:6379/0"}, "redis.url: expected a URL starting redis://"),
        ({"url": "redis://127.0.0.1:notaport/0"}, "redis.url: the port in"),
        ({"url": "redis://127.0.0.1:6379/zero"}, "redis.url: the database in"),
        ({"key_prefix": "has space"}, "redis.key_prefix: expected a key prefix"),
        ({"lease_time": "0s"}, "redis.lease_time: expected a duration greater than zero"),
        ({"max_dead_letters": 0}, "redis.max_dead_letters: expected a whole number of 1 or more"),
    ],
)
def test_a_bad_redis_setting_is_an_error_naming_its_key(section: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend(StubConfig({"redis": section}), FakeClock())
    assert expected in "\n".join(caught.value.lines())


def test_an_unknown_redis_key_gets_a_did_you_mean() -> None:
    config = Config({"scheduler_backend": "redis", "redis": {"leasetime": "5s"}})
    with pytest.raises(ConfigError) as caught:
        config.validate_sections(PluginManager())
    assert "redis.leasetime: unknown redis option (did you mean 'lease_time'?)" in "\n".join(caught.value.lines())


def test_a_url_with_a_password_is_shown_without_it() -> None:
    assert safe_url("redis://:secret@h:6379/0") == "redis://:***@h:6379/0"
    assert safe_url("rediss://user:secret@h/1") == "rediss://user:***@h/1"
    assert safe_url("redis://h:6379/0") == "redis://h:6379/0"
    assert safe_url("redis://:Zx9/q+Wk#Tp2@h:6379/0") == "redis://:***@h:6379/0"  # unparsable as a URL
    assert safe_url("redis://h/0?password=abc&db=1") == "redis://h/0?password=***&db=1"


def test_a_password_that_breaks_the_url_is_not_shown_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        build_backend(StubConfig({"redis": {"url": "redis://:Zx9/q+Wk#Tp2@h:6379/0"}}), FakeClock())
    text = "\n".join(caught.value.lines())
    assert "Zx9" not in text and "percent-encoded" in text
