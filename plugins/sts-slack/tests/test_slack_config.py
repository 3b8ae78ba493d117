"""The ``slack`` config section and a task's ``alerts.slack`` option: errors name the key path
and never show a webhook URL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sts_slack_helpers import job

import sts_memory.plugin
import sts_tasks.plugin
import sts_triggers.plugin
from sts.plugin import Config, ConfigError, PluginManager, Task, TaskValidationError
from sts.scheduler import AsyncTaskScheduler
from sts_slack.config import DEFAULTS, settings_from_config
from sts_slack.plugin import SlackPlugin
from sts_slack.redaction import redact_url

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SECRET = "https://hooks.slack.com/services/T0001/B0001/Zx9SecretToken"


def plugins(slack: SlackPlugin | None = None) -> PluginManager:
    """The standard plugins and a Slack plugin, without scanning entry points."""
    return PluginManager(entry_points=False, plugins=[
        ("memory", sts_memory.plugin), ("triggers", sts_triggers.plugin), ("tasks", sts_tasks.plugin),
        ("slack", slack or SlackPlugin()),
    ])


def problems_of(section: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        Config({"slack": section}).validate_sections(plugins())
    return "\n".join(caught.value.lines())


def test_the_defaults_are_valid_and_off():
    config = Config().validate_sections(plugins())
    assert config.get("slack") == DEFAULTS
    assert settings_from_config(config).enabled is False


def test_enabled_without_a_webhook_url_is_an_error_naming_slack_webhook_url():
    text = problems_of({"enabled": True})
    assert "slack.webhook_url: required when slack.enabled is true" in text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://hooks.slack.com/services/T0001/B0001/Zx9SecretToken", "got a URL starting ftp:// (the rest is not"),
        ("hooks.slack.com/services/T0001/B0001/Zx9SecretToken", "got text that does not start with http:// or"),
        ("https:///services/T0001/B0001/Zx9SecretToken", "got https:// without a host (the rest is not shown"),
        ("https://hooks.slack.com:99999/services/Zx9SecretToken", "is not a valid URL"),
    ],
)
def test_a_webhook_url_that_is_not_http_is_an_error_that_does_not_show_it(url, shown):
    text = problems_of({"enabled": True, "webhook_url": url})
    assert "slack.webhook_url: expected an http:// or https:// URL" in text
    assert shown in text
    assert "Zx9SecretToken" not in text and "T0001" not in text


def test_a_named_webhook_is_checked_the_same_way_under_its_own_key():
    text = problems_of({"webhooks": {"data-team": "smtp://hooks.slack.com/services/T0001/B0001/Zx9SecretToken",
                                     "default": SECRET, "ops": ""}})
    assert "slack.webhooks.data-team: expected an http:// or https:// URL" in text
    assert "slack.webhooks.default: 'default' is the name of slack.webhook_url" in text
    assert "slack.webhooks.ops: no URL" in text
    assert "Zx9SecretToken" not in text


def test_a_url_from_the_environment_is_not_shown_either(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "mailto:Zx9SecretToken@example.com")
    text = problems_of({"enabled": True, "webhook_url": "${SLACK_WEBHOOK_URL}"})
    assert "slack.webhook_url:" in text and "Zx9SecretToken" not in text


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"trottle": "5m"}, "slack.trottle: unknown slack option (did you mean 'throttle'?)"),
        ({"alert_on": {"failures": True}}, "slack.alert_on.failures: unknown alert kind (did you mean 'failure'?)"),
        ({"alert_on": {"retry": "yes"}}, "slack.alert_on.retry: expected true or false, got 'yes'"),
        ({"throttle": "soon"}, "slack.throttle: expected a duration"),
        ({"timeout": 0}, "slack.timeout: expected a duration greater than zero"),
        ({"max_attempts": 0}, "slack.max_attempts: expected a whole number >= 1"),
        ({"max_queue": True}, "slack.max_queue: expected a whole number >= 1"),
        ({"dashboard_url": "https://sts.example.com/runs/{run}"},
         "slack.dashboard_url: unknown placeholder {run} (did you mean 'run_id'?)"),
        ({"dashboard_url": "sts.example.com/{task}"}, "slack.dashboard_url: expected an http:// or https://"),
        ({"icon": "siren"}, "slack.icon: expected an emoji such as :rotating_light:"),
        ({"enabled": "yes"}, "slack.enabled: expected true or false"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_key_path(section, expected):
    assert expected in problems_of(section)


def test_a_bare_yaml_on_key_is_explained(tmp_path: Path):
    path = tmp_path / "sts.yaml"
    path.write_text("slack:\n  on:\n    retry: true\n")
    with pytest.raises(ConfigError) as caught:
        Config.from_yaml(path).validate_sections(plugins())
    assert "slack.on: YAML reads a bare `on` key as true; the switches are called alert_on" in str(caught.value)


def test_settings_are_read_with_durations_in_seconds():
    config = Config({"slack": {"enabled": True, "webhook_url": SECRET, "throttle": "2m", "alert_on": {"retry": True},
                               "webhooks": {"data-team": SECRET + "2"}}}).validate_sections(plugins())
    settings = settings_from_config(config)
    assert settings.throttle == 120.0 and settings.timeout == 5.0
    assert settings.alert_on["retry"] is True and settings.alert_on["failure"] is True
    assert settings.url_of("data-team") == SECRET + "2" and settings.url_of(None) == SECRET
    assert "Zx9SecretToken" not in repr(settings.webhook_names)


def test_the_example_config_validates_with_the_urls_from_the_environment(monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", SECRET)
    monkeypatch.setenv("SLACK_DATA_TEAM_WEBHOOK", SECRET + "-data")
    settings = settings_from_config(Config.from_yaml(EXAMPLES / "sts.yaml").validate_sections(plugins()))
    assert settings.enabled and settings.url_of("data-team") == SECRET + "-data"


def test_redact_url_keeps_scheme_and_host_only():
    assert redact_url(SECRET) == "https://hooks.slack.com/***"
    assert redact_url("http://127.0.0.1:8080/x/y") == "http://127.0.0.1:8080/***"
    assert redact_url("not a url") == "***" and redact_url(None) == "***"


# --- the task option -------------------------------------------------------------------------------------


def add(alerts: Any, **section: Any) -> Task:
    config = Config({"logging": {"loglevel": "WARNING"},
                     "slack": {"webhooks": {"data-team": SECRET + "-data", "ops": SECRET + "-ops"}, **section}})

    async def main() -> Task:
        async with AsyncTaskScheduler(config, plugins=plugins()) as scheduler:
            return await scheduler.add_task(Task("etl", job, every=60, alerts={"slack": alerts}))

    return asyncio.run(main())


@pytest.mark.parametrize("value", [False, True, {"enabled": False}, {"webhook": "data-team"},
                                   {"webhook": "default", "alert_on": {"retry": True, "failure": False}}])
def test_a_task_may_opt_out_route_or_change_kinds(value):
    assert add(value).alerts == {"slack": value}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"webhook": "dat-team"}, "alerts.slack.webhook: unknown webhook 'dat-team' (did you mean 'data-team'?); "
                                  "configured: 'data-team', 'default', 'ops'"),
        ({"enabeld": False}, "alerts.slack.enabeld: unknown option (did you mean 'enabled'?)"),
        ({"alert_on": {"retyr": True}}, "alerts.slack.alert_on.retyr: unknown alert kind (did you mean 'retry'?)"),
        ({"enabled": "no"}, "alerts.slack.enabled: expected true or false, got 'no'"),
        ("data-team", "alerts.slack: expected true, false or a mapping with enabled, webhook, alert_on"),
    ],
)
def test_a_bad_task_option_is_rejected_with_its_key_path(value, expected):
    with pytest.raises(TaskValidationError) as caught:
        add(value, enabled=True, webhook_url=SECRET)
    assert expected in caught.value.render()


def test_webhook_names_are_not_checked_where_slack_is_off():
    """A development config with Slack off need not list the production webhooks."""
    assert add({"webhook": "pagers"}).alerts == {"slack": {"webhook": "pagers"}}


# --- no webhook URL in a repr ------------------------------------------------------------------------------


def test_no_repr_shows_a_webhook_url(make_plugin, slack):
    harness = make_plugin(webhooks={"data-team": slack.url("data-team")})
    instance = harness.plugin.instance(harness.scheduler.id)
    assert instance is not None
    shown = {
        "plugin.settings": repr(harness.plugin.settings),
        "instance": repr(instance),
        "instance.settings": str(instance.settings),
        "alerter": repr(instance.alerter),
        "alerter.settings": repr(instance.alerter.settings),
    }
    for name, text in shown.items():
        for part in ("/services", "T0STS", "B0DEFAULT", "B0DATA-TEAM", "secret-token"):
            assert part not in text, (name, part, text)
    host = slack.url().split("/services")[0]
    assert f"webhook_url='{host}/***', webhooks={{'data-team': '{host}/***'}}" in shown["instance"]
    harness.stop()
