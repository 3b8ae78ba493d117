"""The helpers plugins use for their config sections."""

from __future__ import annotations

import pytest

from sts_core.addresses import format_address, is_loopback, parse_address
from sts_core.sections import check_section


def _port(value: object) -> str | None:
    return None if isinstance(value, int) else f"expected a port number, got {value!r}"


def _limits(value: object) -> list[tuple[str, str]]:
    return [("", "expected a mapping")] if not isinstance(value, dict) else [
        (str(key), "expected a number") for key, limit in value.items() if not isinstance(limit, int)
    ]


CHECKS = {"port": _port, "limits": _limits}


def test_valid_keys_give_no_problems() -> None:
    assert check_section("web", {"port": 80, "limits": {"body": 1024}}, CHECKS) == []


def test_an_unknown_key_gets_a_did_you_mean_among_the_checked_keys() -> None:
    assert check_section("web", {"prot": 80}, CHECKS) == [("prot", "unknown web option (did you mean 'port'?)")]


def test_a_check_may_speak_about_its_key_or_the_keys_below_it() -> None:
    problems = check_section("web", {"port": "80", "limits": {"body": "1k"}}, CHECKS)
    assert problems == [("port", "expected a port number, got '80'"), ("limits.body", "expected a number")]
    assert check_section("web", {"limits": 5}, CHECKS) == [("limits", "expected a mapping")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), ("[::1]:0", ("::1", 0)), ("localhost:9464", ("localhost", 9464))],
)
def test_addresses_are_host_and_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected
    assert parse_address(format_address(*expected)) == expected


@pytest.mark.parametrize("text", ["8080", "::1:8080", "host:", ":80", "host:99999", 8080])
def test_a_bad_address_says_what_is_expected_with_the_plugins_example(text: object) -> None:
    with pytest.raises(ValueError, match=r"^expected host:port like 127.0.0.1:9999; got"):
        parse_address(text, "expected host:port like 127.0.0.1:9999")


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                                ("LOCALHOST.", True), ("0.0.0.0", False), ("example.com", False)])
def test_loopback_hosts_are_told_from_the_others(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
