"""Specification of the configuration: defaults, files, references, environment overrides, validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sts_core.config import CORE_RULES, Config, packaged_defaults
from sts_core.errors import ConfigError
from sts_core.hookspecs import hookimpl
from sts_core.plugins import PluginManager

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No STS_* variable from the developer's shell changes what these tests see."""
    for name in list(os.environ):
        if name.upper().startswith("STS_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(error: pytest.ExceptionInfo[ConfigError]) -> dict[str, Any]:
    return {problem.key_path: problem for problem in error.value.problems}


def leaf_paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        paths |= leaf_paths(value, path + ".") if isinstance(value, dict) else {path}
    return paths


# --- defaults ------------------------------------------------------------------------------------


def test_default_config_has_the_documented_values() -> None:
    config = Config()
    assert config["scheduler_backend"] == "memory"
    assert config["timezone"] == "UTC"
    assert config["retries"] == 0
    assert config.seconds("retry_delay") == 1.0
    assert config["backoff"] == 1.0
    assert config.seconds("max_retry_delay") == 300.0
    assert config.seconds("retry_jitter") == 0.0
    assert config.seconds("timeout") is None
    assert config["misfire"] == "coalesce"
    assert config.seconds("misfire_grace_time") == 30.0
    assert config.section("executor") == {
        "type": "thread",
        "max_workers": 8,
        "max_abandoned_threads": 32,
        "concurrency": 100,
        "kill_grace": "5s",
        "output_limit": 65536,
        "max_redeliveries": 3,
    }
    assert config.seconds("scheduler.shutdown_grace") == 10.0
    assert config["scheduler.max_batch"] == 1000
    assert config["history.max_runs_per_task"] == 1000
    assert config.seconds("history.max_age") == 7 * 86400
    assert config.section("logging") == {"loglevel": "INFO", "output": "stdout", "format": "text"}
    assert config["log_file"] == "sts.log"
    assert config["plugins.disable"] == []
    assert config.source is None


def test_every_default_key_has_a_rule_and_every_rule_a_default() -> None:
    assert leaf_paths(packaged_defaults()) == set(CORE_RULES)


def test_every_default_key_is_documented_by_a_comment_above_it() -> None:
    lines = (REPO / "sts_core" / "default.yaml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert lines[index - 1].lstrip().startswith("#"), f"undocumented key: {line.strip()}"


def test_defaults_are_package_data_and_load_outside_the_repository(tmp_path: Path) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "default.yaml" in pyproject["tool"]["setuptools"]["package-data"]["sts_core"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = "from sts_core.config import Config; print(Config()['misfire'])"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "coalesce"


def test_data_is_a_copy_that_cannot_change_the_config() -> None:
    config = Config()
    config.data["logging"]["loglevel"] = "DEBUG"
    config.section("logging")["loglevel"] = "DEBUG"
    config.get("plugins.disable").append("memory")
    assert config["logging.loglevel"] == "INFO"
    assert config["plugins.disable"] == []


def test_get_returns_the_default_for_a_missing_path_and_getitem_raises() -> None:
    config = Config()
    assert config.get("logging.nope") is None
    assert config.get("retries.deeper", default=3) == 3
    assert "logging.loglevel" in config
    assert "nope" not in config
    with pytest.raises(KeyError, match="did you mean 'retries'"):
        config["retires"]


# --- merging and files ---------------------------------------------------------------------------


def test_user_data_is_deep_merged_over_the_defaults() -> None:
    config = Config({"retries": 3, "logging": {"loglevel": "DEBUG"}, "executor": None})
    assert config["retries"] == 3
    assert config.section("logging") == {"loglevel": "DEBUG", "output": "stdout", "format": "text"}
    assert config["executor.max_workers"] == 8  # an empty section keeps its defaults


def test_the_callers_mapping_is_not_shared(tmp_path: Path) -> None:
    data = {"plugins": {"disable": ["slack"]}}
    config = Config(data)
    data["plugins"]["disable"].append("redis")
    assert config["plugins.disable"] == ["slack"]


def test_from_yaml_reads_a_file_and_remembers_it(tmp_path: Path) -> None:
    path = write(tmp_path, "sts.yaml", "retries: 2\nlogging:\n  format: json\n")
    config = Config.from_yaml(path)
    assert config["retries"] == 2
    assert config["logging.format"] == "json"
    assert config["logging.output"] == "stdout"
    assert config.source == str(path)


def test_from_json_reads_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sts.json", json.dumps({"timeout": "2m", "history": {"max_age": None}}))
    config = Config.from_json(path)
    assert config.seconds("timeout") == 120.0
    assert config.seconds("history.max_age") is None


def test_from_file_chooses_the_format_by_extension(tmp_path: Path) -> None:
    assert Config.from_file(write(tmp_path, "a.yml", "retries: 1\n"))["retries"] == 1
    assert Config.from_file(write(tmp_path, "a.json", '{"retries": 4}'))["retries"] == 4
    with pytest.raises(ConfigError, match=r"a\.toml.*expected a \.yaml, \.yml or \.json file"):
        Config.from_file(write(tmp_path, "a.toml", "retries = 1\n"))


def test_an_empty_yaml_file_is_the_defaults(tmp_path: Path) -> None:
    assert Config.from_yaml(write(tmp_path, "empty.yaml", "# nothing yet\n")) == Config()


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_save_config_round_trips(tmp_path: Path, suffix: str) -> None:
    config = Config({"retries": 5, "logging": {"format": "json"}, "redis": {"url": "redis://x"}})
    target = tmp_path / f"saved{suffix}"
    config.save_config(target)
    again = Config.from_file(target)
    assert again == config
    assert again.source == str(target)


def test_save_config_keeps_references_and_leaves_environment_values_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "s3cr3t")
    monkeypatch.setenv("STS_RETRIES", "7")
    config = Config({"slack": {"token": "${SECRET_TOKEN}"}})
    assert config["slack.token"] == "s3cr3t"
    assert config["retries"] == 7
    target = tmp_path / "saved.yaml"
    config.save_config(target)
    text = target.read_text(encoding="utf-8")
    assert "s3cr3t" not in text
    saved = yaml.safe_load(text)
    assert saved["slack"]["token"] == "${SECRET_TOKEN}"
    assert saved["retries"] == 0


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = write(tmp_path, "evil.yaml", "retries: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml"):
        Config.from_yaml(path)


# --- file errors ---------------------------------------------------------------------------------


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: file not found"):
        Config.from_yaml(tmp_path / "nope.yaml")


def test_malformed_yaml_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "retries: 1\nlogging:\n  loglevel: [INFO\n")
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(path)
    message = str(error.value)
    assert "bad.yaml" in message
    assert "malformed YAML at line 4, column 1" in message


def test_malformed_json_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", '{\n  "retries": 1,\n}\n')
    with pytest.raises(ConfigError) as error:
        Config.from_json(path)
    assert str(error.value).startswith(f"{path}:3: malformed JSON at line 3, column 1")


@pytest.mark.parametrize(("name", "text"), [("list.yaml", "- retries\n"), ("list.json", "[1, 2]")])
def test_a_top_level_that_is_not_a_mapping_is_an_error(tmp_path: Path, name: str, text: str) -> None:
    with pytest.raises(ConfigError, match=rf"{name}: expected a mapping of settings at the top level.*got list"):
        Config.from_file(write(tmp_path, name, text))


def test_data_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ConfigError, match="expected a mapping of settings"):
        Config(["retries"])  # type: ignore[arg-type]


# --- ${VAR} references ---------------------------------------------------------------------------


def test_a_reference_is_replaced_by_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_TEST_DIR", "/var/log")
    config = Config({"log_file": "${STS_TEST_DIR}/sts.log", "plugins": {"disable": ["${STS_TEST_DIR}"]}})
    assert config["log_file"] == "/var/log/sts.log"
    assert config["plugins.disable"] == ["/var/log"]


def test_a_reference_falls_back_when_the_variable_is_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMPTY_VALUE", "")
    monkeypatch.delenv("UNSET_VALUE", raising=False)
    config = Config({"log_file": "${UNSET_VALUE:-a.log}", "redis": {"url": "${EMPTY_VALUE:-redis://localhost}"}})
    assert config["log_file"] == "a.log"
    assert config["redis.url"] == "redis://localhost"


def test_a_doubled_dollar_keeps_a_literal_reference() -> None:
    assert Config({"log_file": "$${HOME}.log"})["log_file"] == "${HOME}.log"


def test_a_missing_variable_without_fallback_names_the_key_path_line_and_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_TOKEN", raising=False)
    path = write(tmp_path, "sts.yaml", "retries: 1\nslack:\n  token: ${SLACK_TOKEN}\n")
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(path)
    assert str(error.value) == (
        f"{path}:3: slack.token: environment variable SLACK_TOKEN is not set; "
        "set it or write ${SLACK_TOKEN:-fallback}"
    )


def test_a_reference_in_a_number_key_says_to_use_the_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("N_RETRIES", "3")
    with pytest.raises(ConfigError, match="reference always gives text: set numbers with STS_RETRIES"):
        Config({"retries": "${N_RETRIES}"})


# --- STS_* environment overrides -----------------------------------------------------------------


def test_a_top_level_key_is_overridden_with_its_type_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_RETRIES", "5")
    monkeypatch.setenv("STS_BACKOFF", "2.5")
    monkeypatch.setenv("STS_TIMEOUT", "null")
    config = Config({"timeout": "1m"})
    assert config["retries"] == 5
    assert config["backoff"] == 2.5
    assert config["timeout"] is None


def test_a_nested_key_is_overridden_case_insensitively(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_LOGGING__LOGLEVEL", "DEBUG")
    monkeypatch.setenv("sts_executor__max_workers", "2")
    monkeypatch.setenv("STS_PLUGINS__DISABLE", "[slack, redis]")
    config = Config()
    assert config["logging.loglevel"] == "DEBUG"
    assert config["executor.max_workers"] == 2
    assert config["plugins.disable"] == ["slack", "redis"]


def test_an_override_applies_to_keys_of_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_REDIS__PORT", "6380")
    assert Config({"redis": {"port": 6379}})["redis.port"] == 6380


def test_variables_that_name_no_key_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_CONFIG", "/etc/sts.yaml")
    monkeypatch.setenv("STS_DISABLE_PLUGINS", "slack")
    monkeypatch.setenv("STS_LOGGING", "DEBUG")  # a section, not a key
    assert Config().data == packaged_defaults()


def test_an_invalid_override_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_RETRIES", "many")
    with pytest.raises(ConfigError) as error:
        Config()
    assert str(error.value) == (
        "retries: expected a whole number >= 0, got 'many' (from environment variable STS_RETRIES)"
    )


def test_an_override_replaces_a_reference_to_a_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    monkeypatch.setenv("STS_SLACK__TOKEN", "from-env")
    assert Config({"slack": {"token": "${NOT_SET_ANYWHERE}"}})["slack.token"] == "from-env"


# --- validation ------------------------------------------------------------------------------------

INVALID_VALUES = [
    ("scheduler_backend", "", "expected a backend name"),
    ("timezone", "Europe/Berln", "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"),
    ("retries", -1, "expected a whole number >= 0, got -1"),
    ("retries", True, "expected a whole number >= 0, got True"),
    ("retry_delay", "soon", "expected a duration such as 30s, 5m or 1h30m, got 'soon'"),
    ("backoff", 0.5, "expected a finite number >= 1.0, got 0.5"),
    ("backoff", float("inf"), "expected a finite number >= 1.0, got inf"),
    ("max_retry_delay", "-5m", "expected a duration"),
    ("retry_jitter", [1], "expected a duration"),
    ("timeout", "0s", "expected a duration greater than zero such as 30s, 5m or 1h30m, or null, got '0s'"),
    ("misfire", "coalesse", "expected one of coalesce, skip, run_all, got 'coalesse' (did you mean 'coalesce'?)"),
    ("misfire_grace_time", "x", "expected a duration"),
    ("executor.type", "threads", "expected one of thread, process, got 'threads' (did you mean 'thread'?)"),
    ("executor.max_workers", 0, "expected a whole number >= 1, got 0"),
    ("executor.max_abandoned_threads", -1, "expected a whole number >= 0, got -1"),
    ("executor.concurrency", -3, "expected a whole number >= 1, got -3"),
    ("executor.kill_grace", "fast", "expected a duration"),
    ("executor.output_limit", 1.5, "expected a whole number >= 0, got 1.5"),
    ("scheduler.shutdown_grace", None, "expected a duration such as 30s, 5m or 1h30m, got None"),
    ("scheduler.max_batch", "10", "expected a whole number >= 1, got '10'"),
    ("history.max_runs_per_task", 0, "expected a whole number >= 1, or null, got 0"),
    ("history.max_age", "forever", "expected a duration such as 30s, 5m or 1h30m, or null"),
    ("logging.loglevel", "LOUD", "expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'LOUD'"),
    ("logging.output", "stdot", "got 'stdot' (did you mean 'stdout'?)"),
    ("logging.format", "xml", "expected one of text, json, got 'xml'"),
    ("log_file", 3, "expected a file path such as sts.log, got 3"),
    ("plugins.disable", "slack", "expected a list of plugin names such as [slack, redis], got 'slack'"),
]


def nested(path: str, value: Any) -> dict[str, Any]:
    section, _, key = path.rpartition(".")
    return {section: {key: value}} if section else {key: value}


@pytest.mark.parametrize(("path", "value", "expected"), INVALID_VALUES, ids=[case[0] for case in INVALID_VALUES])
def test_an_invalid_value_names_the_file_line_key_path_and_expectation(
    tmp_path: Path, path: str, value: Any, expected: str
) -> None:
    file = write(tmp_path, "sts.yaml", "# my settings\n" + yaml.safe_dump(nested(path, value)))
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(file)
    line = 3 if "." in path else 2
    assert str(error.value).startswith(f"{file}:{line}: {path}: ")
    assert expected in str(error.value)
    assert [problem.key_path for problem in error.value.problems] == [path]
    assert error.value.source == str(file)


def test_the_log_level_is_accepted_in_any_case() -> None:
    assert Config({"logging": {"loglevel": "debug"}})["logging.loglevel"] == "debug"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.yaml", "retries: -1\nmisfire: never\nexecutor:\n  max_workers: 0\n")
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(file)
    found = problems_of(error)
    assert set(found) == {"retries", "misfire", "executor.max_workers"}
    assert [found[path].line for path in ("retries", "misfire", "executor.max_workers")] == [1, 2, 4]
    assert len(str(error.value).splitlines()) == 3


def test_an_unknown_key_in_a_core_section_suggests_the_closest(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.yaml", "logging:\n  loglevel: INFO\n  levle: DEBUG\n")
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(file)
    assert str(error.value).startswith(f"{file}:3: logging.levle: unknown key 'levle'")
    assert "expected one of 'format', 'loglevel', 'output' in logging" in str(error.value)


def test_a_misspelt_top_level_key_suggests_the_core_key(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.yaml", "retires: 3\n")
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(file)
    assert str(error.value).startswith(f"{file}:1: retires: unknown key 'retires' (did you mean 'retries'?)")


def test_a_core_section_that_is_not_a_mapping_is_an_error() -> None:
    with pytest.raises(ConfigError, match="executor: expected a mapping with the keys 'concurrency', 'kill_grace'"):
        Config({"executor": "process"})


def test_an_unknown_top_level_mapping_is_allowed_until_plugins_are_known() -> None:
    assert Config({"redis": {"url": "redis://localhost"}})["redis.url"] == "redis://localhost"


def test_validation_errors_in_json_files_carry_lines_too(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.json", '{\n  "retries": 1,\n  "misfire": "later"\n}\n')
    with pytest.raises(ConfigError) as error:
        Config.from_json(file)
    assert problems_of(error)["misfire"].line == 3


def test_validation_errors_in_a_tab_indented_json_file_carry_lines_too(tmp_path: Path) -> None:
    # Tabs are valid JSON but not YAML: the lines are found by reading the JSON itself.
    file = write(tmp_path, "sts.json", '{\n\t"retries": 1,\n\t"misfire": "later"\n}\n')
    with pytest.raises(ConfigError) as error:
        Config.from_json(file)
    assert problems_of(error)["misfire"].line == 3


@pytest.mark.parametrize(("name", "text"), [
    ("sts.yaml", "retries: 1\nretries: -1\n"),
    ("sts.json", '{\n  "retries": 1,\n  "retries": -1\n}\n'),
])
def test_a_key_given_twice_is_reported_at_the_line_of_the_value_that_counts(
    tmp_path: Path, name: str, text: str
) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_file(write(tmp_path, name, text))
    assert problems_of(error)["retries"].line == (2 if name.endswith(".yaml") else 3)


# --- set ---------------------------------------------------------------------------------------------


def test_set_changes_a_value_after_validating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_RETRIES", "9")
    config = Config()
    config.set("retries", 2)
    config.set("logging.format", "json")
    config.set("redis.url", "redis://h")
    assert config["retries"] == 2  # a value set in code wins over the environment
    assert config["logging.format"] == "json"
    assert config["redis.url"] == "redis://h"


def test_set_refuses_an_invalid_value_and_changes_nothing() -> None:
    config = Config()
    with pytest.raises(ConfigError, match=r"executor\.max_workers: expected a whole number >= 1"):
        config.set("executor.max_workers", 0)
    with pytest.raises(ConfigError, match=r"cannot set 'retries\.x'"):
        config.set("retries.x", 1)
    assert config == Config()


def test_configs_with_equal_values_are_equal() -> None:
    assert Config({"retries": 1}) == Config({"retries": 1})
    assert Config({"retries": 1}) != Config({"retries": 2})
    assert Config() != {"retries": 0}


# --- plugin sections -------------------------------------------------------------------------------


class SlackPlugin:
    """A fake plugin with a config section, its defaults and a validator."""

    @hookimpl
    def register_config_sections(self, register: Any) -> None:
        def validate(section: dict[str, Any]) -> list[tuple[str, str]]:
            problems = []
            if not str(section["webhook"]).startswith("https://"):
                problems.append(("webhook", f"expected an https:// URL, got {section['webhook']!r}"))
            if not isinstance(section["channels"], list):
                problems.append(("slack.channels", "expected a list of channel names"))
            return problems

        register(
            "slack", {"webhook": "https://hooks.example", "channels": ["#ops"], "mention": False}, validate=validate
        )


def plugin_manager(*plugins: tuple[str, object]) -> PluginManager:
    return PluginManager(entry_points=False, plugins=plugins)


def test_validate_sections_merges_plugin_defaults_beneath_the_users_values() -> None:
    config = Config({"slack": {"channels": ["#alerts"]}})
    assert config.validate_sections(plugin_manager(("slack", SlackPlugin()))) is config
    assert config.section("slack") == {"webhook": "https://hooks.example", "channels": ["#alerts"], "mention": False}


def test_validate_sections_makes_plugin_keys_overridable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_SLACK__MENTION", "true")
    config = Config().validate_sections(plugin_manager(("slack", SlackPlugin())))
    assert config["slack.mention"] is True


def test_validate_sections_reports_the_validators_problems_with_key_paths_and_lines(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.yaml", "slack:\n  webhook: http://insecure\n  channels: ops\n")
    config = Config.from_yaml(file)
    with pytest.raises(ConfigError) as error:
        config.validate_sections(plugin_manager(("slack", SlackPlugin())))
    found = problems_of(error)
    assert set(found) == {"slack.webhook", "slack.channels"}
    assert str(error.value).splitlines()[0] == (
        f"{file}:2: slack.webhook: expected an https:// URL, got 'http://insecure'"
    )
    assert found["slack.channels"].line == 3


def test_validate_sections_rejects_an_unknown_section_with_a_suggestion(tmp_path: Path) -> None:
    file = write(tmp_path, "sts.yaml", "slak:\n  webhook: https://x\n")
    config = Config.from_yaml(file)
    with pytest.raises(ConfigError) as error:
        config.validate_sections(plugin_manager(("slack", SlackPlugin())))
    assert str(error.value).startswith(f"{file}:1: slak: unknown key 'slak' (did you mean 'slack'?)")
    assert config.get("slack") is None  # unchanged on error


def test_validate_sections_keeps_checking_the_section_after_set() -> None:
    config = Config().validate_sections(plugin_manager(("slack", SlackPlugin())))
    with pytest.raises(ConfigError, match=r"slack\.webhook: expected an https:// URL"):
        config.set("slack.webhook", "ftp://x")
    with pytest.raises(ConfigError, match="unknown key 'redis'"):
        config.set("redis", {"url": "redis://h"})


def test_a_section_of_a_plugin_that_failed_to_load_is_tolerated() -> None:
    class BrokenSlack:
        @hookimpl
        def register_config_sections(self, register: Any, no_such_argument: Any) -> None:
            """Refused by pluggy: the hook has no such argument."""

    pm = plugin_manager(("slack", BrokenSlack()))
    assert [(info.name, info.status) for info in pm.plugin_infos()] == [("slack", "failed")]
    config = Config({"slack": {"webhook": "https://x"}}).validate_sections(pm)
    assert config["slack.webhook"] == "https://x"


def test_a_validator_that_raises_is_reported_with_its_plugin() -> None:
    class Broken:
        @hookimpl
        def register_config_sections(self, register: Any) -> None:
            register("broken", {"a": 1}, validate=lambda section: 1 / 0)

    with pytest.raises(ConfigError, match="broken: the validator of plugin 'broken' failed: ZeroDivisionError"):
        Config().validate_sections(plugin_manager(("broken", Broken())))


def test_a_plugin_may_not_register_a_core_key_as_its_section() -> None:
    class Greedy:
        @hookimpl
        def register_config_sections(self, register: Any) -> None:
            register("logging", {"colour": True})

    with pytest.raises(ConfigError, match="plugin 'greedy' registers the config section 'logging', which is a core"):
        Config().validate_sections(plugin_manager(("greedy", Greedy())))


def test_a_saved_config_with_plugin_sections_round_trips(tmp_path: Path) -> None:
    config = Config().validate_sections(plugin_manager(("slack", SlackPlugin())))
    config.save_config(tmp_path / "saved.yaml")
    again = Config.from_yaml(tmp_path / "saved.yaml").validate_sections(plugin_manager(("slack", SlackPlugin())))
    assert again == config


# --- numbers too large for a float, and YAML alias bombs (issue 14) --------------------------------

HUGE = 10**309

HUGE_VALUES = [
    ("backoff", "expected a finite number >= 1.0, got a number of about 310 digits"),
    ("retry_delay", "expected a duration such as 30s, 5m or 1h30m, got a number of about 310 digits"),
    ("timeout", "expected a duration greater than zero such as 30s, 5m or 1h30m, or null, got a number of"),
    ("misfire_grace_time", "expected a duration"),
    ("executor.kill_grace", "expected a duration"),
    ("retries", "expected a whole number from 0 to 1000000000, got a number of about 310 digits"),
    ("executor.max_workers", "expected a whole number from 1 to 1000000000"),
    ("history.max_runs_per_task", "expected a whole number from 1 to 1000000000"),
]


@pytest.mark.parametrize(("path", "expected"), HUGE_VALUES, ids=[case[0] for case in HUGE_VALUES])
def test_a_number_too_large_for_a_float_is_a_config_error_not_an_overflow(
    tmp_path: Path, path: str, expected: str
) -> None:
    file = write(tmp_path, "sts.yaml", yaml.safe_dump(nested(path, HUGE)))
    with pytest.raises(ConfigError) as error:
        Config.from_yaml(file)
    assert [problem.key_path for problem in error.value.problems] == [path]
    assert expected in str(error.value)
    assert len(str(error.value)) < 300


def test_a_yaml_alias_bomb_in_a_config_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    file = write(tmp_path, "sts.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"refused: its YAML aliases \(\*name\) expand to more than 100,000") as error:
        Config.from_yaml(file)
    assert error.value.source == str(file)


def test_an_alias_bomb_in_an_environment_override_is_kept_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    levels = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "[" + ", ".join(levels) + "]"
    monkeypatch.setenv("STS_LOG_FILE", bomb)
    assert Config({})["log_file"] == bomb  # not read as YAML: it would expand to 9**9 strings


@pytest.mark.parametrize(("name", "text"), [("sts.yaml", "retries: 1{zeros}\n"),
                                           ("sts.json", '{{"retries": 1{zeros}}}')])
def test_an_integer_too_long_to_read_is_a_config_error(tmp_path: Path, name: str, text: str) -> None:
    file = write(tmp_path, name, text.format(zeros="0" * 5000))
    with pytest.raises(ConfigError, match="refused: a number of more than 4,300 digits, which cannot be read"):
        Config.from_file(file)
