"""The ``api`` config section: safe defaults, tokens from the environment, and errors that name
the key path and what was expected without ever showing a token."""

from __future__ import annotations

import pytest

from sts.plugin import Config, ConfigError, PluginManager
from sts_api.config import Settings, Token


def settings_of(data: dict) -> Settings:
    return Settings.from_config(Config(data).validate_sections(PluginManager()))


def errors_of(section: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        Config({"api": section}).validate_sections(PluginManager())
    return "\n".join(caught.value.lines())


def test_the_defaults_keep_the_api_off_on_loopback_and_allow_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STS_API_TOKEN", raising=False)
    monkeypatch.delenv("STS_API_READ_TOKEN", raising=False)
    settings = settings_of({})
    assert settings == Settings(enabled=False, host="127.0.0.1", port=8080, tokens=(), max_body_bytes=65536,
                                cors_origins=(), allowed_functions=(), allowed_task_types=("python",),
                                allowed_commands=(), allowed_cwds=(), run_any_task=False, allowed_hosts=(),
                                request_timeout=10.0, max_connections=100)


def test_the_hardening_settings_are_read() -> None:
    settings = settings_of({"api": {"allowed_cwds": ["/srv/reports"], "run_any_task": True,
                                    "allowed_hosts": ["API.example.com"], "request_timeout": "2.5s",
                                    "max_connections": 20}})
    assert (settings.allowed_cwds, settings.run_any_task, settings.allowed_hosts, settings.request_timeout,
            settings.max_connections) == (("/srv/reports",), True, ("api.example.com",), 2.5, 20)


def test_tokens_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_API_TOKEN", "admin-secret-0123456789")
    monkeypatch.setenv("STS_API_READ_TOKEN", "read-secret-0123456789")
    monkeypatch.setenv("STS_API__ENABLED", "true")
    settings = settings_of({})
    assert settings.enabled
    assert settings.tokens == (Token("admin_token", "admin", "admin-secret-0123456789"),
                               Token("read_token", "read", "read-secret-0123456789"))
    assert "secret" not in repr(settings)


def test_a_saved_config_keeps_the_reference_not_the_token(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("STS_API_TOKEN", "admin-secret-0123456789")
    config = Config({"api": {"enabled": True}}).validate_sections(PluginManager())
    config.save_config(tmp_path / "saved.yaml")
    text = (tmp_path / "saved.yaml").read_text()
    assert "${STS_API_TOKEN:-}" in text and "admin-secret" not in text


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"enabled": True, "admin_token": "", "read_token": ""},
         "api.admin_token: required when api.enabled is true: set the STS_API_TOKEN environment variable"),
        ({"admin_token": "short"}, "api.admin_token: expected a token of at least 16 characters, got 5 "
                                   "(not shown: tokens are secrets)"),
        ({"read_token": "has spaces in the middle"}, "api.read_token: expected a token without spaces"),
        ({"admin_token": "same-token-0123456789", "read_token": "same-token-0123456789"},
         "api.read_token: the same token as admin_token"),
        ({"tokens": [{"token": "ci-token-0123456789", "scope": "owner"}]},
         "api.tokens[0].scope: expected read or admin, got 'owner'"),
        ({"tokens": [{"scope": "read"}]}, "api.tokens[0].token: required: the bearer token"),
        ({"tokens": [{"token": "ci-token-0123456789", "scope": "read", "scop": 1}]},
         "api.tokens[0].scop: unknown token option (did you mean 'scope'?)"),
        ({"address": "localhost"}, "api.address: expected host:port such as 127.0.0.1:8080"),
        ({"max_body_bytes": 10}, "api.max_body_bytes: expected a whole number of bytes from 1024 to 16777216"),
        ({"cors_origins": ["https://ops.example.com/path"]}, "api.cors_origins[0]: expected an origin such as"),
        ({"allowed_functions": "myapp:*"}, "api.allowed_functions: expected a list of patterns, got 'myapp:*'"),
        ({"allowed_task_types": [""]}, "api.allowed_task_types[0]: expected task type name"),
        ({"allowed_fuctions": []}, "api.allowed_fuctions: unknown api option (did you mean 'allowed_functions'?)"),
        ({"enabled": "yes"}, "api.enabled: expected true or false, got 'yes'"),
        ({"allowed_functions": ["myapp:jobs:*"]}, "api.allowed_functions[0]: expected 'module:function' (one ':')"),
        ({"allowed_functions": ["myapp:"]}, "api.allowed_functions[0]: expected a module pattern and a function "
                                            "pattern around the ':'"),
        ({"allowed_cwds": ["srv/app"]}, "api.allowed_cwds[0]: expected an absolute directory such as /srv/reports"),
        ({"allowed_cwds": ["/srv/../etc"]}, "api.allowed_cwds[0]: expected an absolute directory"),
        ({"run_any_task": "no"}, "api.run_any_task: expected true or false, got 'no'"),
        ({"allowed_hosts": ["https://api.example.com"]}, "api.allowed_hosts[0]: expected a host name or address "
                                                         "without port"),
        ({"request_timeout": 0}, "api.request_timeout: expected a duration from 0.1s to 600s such as 10s, got 0"),
        ({"request_timeout": "forever"}, "api.request_timeout: expected a duration from 0.1s to 600s"),
        ({"max_connections": 0}, "api.max_connections: expected a whole number of connections from 1 to 100000"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_key_path(section: dict, expected: str) -> None:
    assert expected in errors_of(section)


def test_no_message_shows_a_token() -> None:
    text = errors_of({"admin_token": "short secret", "tokens": [{"token": "tiny", "scope": "read"},
                                                                {"token": 12345, "scope": "read"}]})
    assert "short secret" not in text and "tiny" not in text and "12345" not in text
    assert "api.tokens[1].token: expected text (a bearer token), got int" in text
