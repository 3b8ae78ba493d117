"""The ``prometheus`` config section: defaults, overrides from the environment, and errors that
name the key path and what was expected."""

from __future__ import annotations

import pytest

from sts.plugin import Config, ConfigError, PluginManager
from sts_prometheus.config import DURATION_BUCKETS, LATENESS_BUCKETS, Settings, parse_address
from sts_prometheus.metrics import build_metrics


def settings_of(data: dict) -> Settings:
    return Settings.from_config(Config(data).validate_sections(PluginManager()))


def test_the_defaults_keep_metrics_off_and_on_loopback() -> None:
    settings = settings_of({})
    assert settings == Settings(enabled=False, host="127.0.0.1", port=9464, sample_interval=5.0,
                                process_metrics=True, duration_buckets=DURATION_BUCKETS,
                                lateness_buckets=LATENESS_BUCKETS)
    assert DURATION_BUCKETS[0] <= 0.005 and DURATION_BUCKETS[-1] >= 3600  # milliseconds to hours
    assert LATENESS_BUCKETS[0] == 0.001


def test_each_process_can_get_its_own_address_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("STS_PROMETHEUS__ADDRESS", "127.0.0.1:9465")
    monkeypatch.setenv("STS_PROMETHEUS__ENABLED", "true")
    settings = settings_of({})
    assert (settings.enabled, settings.host, settings.port) == (True, "127.0.0.1", 9465)


def test_settings_are_read_from_the_section() -> None:
    settings = settings_of({"prometheus": {
        "enabled": True, "address": "[::1]:0", "sample_interval": "250ms", "process_metrics": False,
        "buckets": {"duration": ["10ms", 1, "1h"]},
    }})
    assert (settings.host, settings.port, settings.address) == ("::1", 0, "[::1]:0")
    assert settings.sample_interval == 0.25 and not settings.process_metrics
    assert settings.duration_buckets == (0.01, 1.0, 3600.0)
    assert settings.lateness_buckets == LATENESS_BUCKETS


def test_bucket_overrides_shape_the_histograms() -> None:
    metrics = build_metrics(Settings(duration_buckets=(0.5, 2.0)), health=lambda: None, backend="m", version="0")
    metrics.run_duration.labels("t").observe(1.0)
    bounds = [s.labels["le"] for f in metrics.run_duration.collect() for s in f.samples if s.name.endswith("_bucket")]
    assert bounds == ["0.5", "2.0", "+Inf"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"address": "9464"}, "prometheus.address: expected host:port such as 127.0.0.1:9464"),
        ({"address": "localhost"}, "port 0 picks a free port; got 'localhost'"),
        ({"address": "::1:9464"}, "prometheus.address: expected host:port"),
        ({"address": "127.0.0.1:70000"}, "prometheus.address: expected host:port"),
        ({"address": ":9464"}, "prometheus.address: expected host:port"),
        ({"enabled": "yes"}, "prometheus.enabled: expected true or false, got 'yes'"),
        ({"sample_interval": "0s"}, "prometheus.sample_interval: expected a duration greater than zero"),
        ({"buckets": {"duration": [1, 0.5]}}, "prometheus.buckets.duration: expected null (the default buckets) "
                                              "or a list of increasing durations"),
        ({"buckets": {"latency": [1]}}, "prometheus.buckets.latency: unknown histogram (did you mean 'lateness'?)"),
        ({"adress": "127.0.0.1:1"}, "prometheus.adress: unknown prometheus option (did you mean 'address'?)"),
    ],
)
def test_a_bad_setting_is_an_error_naming_its_key_path(section: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config({"prometheus": section}).validate_sections(PluginManager())
    assert expected in "\n".join(caught.value.lines())


def test_a_bad_address_from_the_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("STS_PROMETHEUS__ADDRESS", "nohost")
    with pytest.raises(ConfigError) as caught:
        Config({}).validate_sections(PluginManager())
    text = "\n".join(caught.value.lines())
    assert "prometheus.address: expected host:port" in text and "STS_PROMETHEUS__ADDRESS" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("0.0.0.0:0", ("0.0.0.0", 0)), ("[::]:9464", ("::", 9464)),
     ("metrics.internal:9100", ("metrics.internal", 9100))],
)
def test_addresses_are_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
