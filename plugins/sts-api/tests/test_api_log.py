"""What the API writes to the log, read as the text log shows it (the ``sts`` logger as
``TaskScheduler.start`` configures it): every refused request at WARNING with the token's name
(never the token), and the client's control characters escaped in every line."""

from __future__ import annotations

import re

import pytest
from sts_api_helpers import ADMIN, READ, RunningApi, task_body

from sts.plugin import Task

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z (?P<level>[A-Z]+)\s+(?P<logger>\S+)  (?P<message>.*)$")


def log_lines(capsys: pytest.CaptureFixture[str], logger: str = "sts.api") -> list[tuple[str, str]]:
    """``(level, message)`` of each line ``logger`` wrote since the last call; any other output
    fails the test (a line a message would have forged, say)."""
    lines = []
    for line in capsys.readouterr().out.splitlines():
        match = LOG_LINE.match(line)
        assert match, f"not a log line: {line!r}"
        if match["logger"] == logger:
            lines.append((match["level"], match["message"]))
    return lines


def test_failed_authentication_is_logged_as_a_refusal_without_the_token(
        api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert api.client.get("/tasks", token=None).status == 401
    assert api.client.get("/tasks", token="stolen-but-wrong-token-0123456789").status == 401
    assert api.client.post("/tasks", task_body("x"), token=READ).status == 403
    out = log_lines(capsys)
    assert out == [
        ("WARNING", "GET /tasks -> 401 refused (token none): missing bearer token: send the header "
                    "'Authorization: Bearer <token>'"),
        ("WARNING", "GET /tasks -> 401 refused (token none): invalid bearer token"),
        ("WARNING", "POST /tasks -> 403 refused (token read_token): this operation needs a token with the "
                    "admin scope; this token has read"),
    ]
    assert not any(secret in message for _, message in out for secret in (READ, ADMIN, "stolen-but-wrong"))


def test_allowlist_refusals_are_logged_with_the_token_name(api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.scheduler.add_task(Task("maint", type="shell", command="echo hi", enabled=False))
    api.scheduler.add_task(Task("nightly", function="sts_core.testing:noop", cron="0 3 * * *"))
    capsys.readouterr()
    assert api.client.post("/tasks", {"name": "pwn", "function": "os:system", "args": ["id"]}).status == 422
    assert api.client.call("PUT", "/tasks/pwn", {"type": "shell", "command": "id"}).status == 422
    assert api.client.call("PATCH", "/tasks/nightly", {"retries": 2}).status == 422
    assert api.client.post("/tasks/maint/resume").status == 403
    assert api.client.post("/tasks/nightly/run").status == 403
    out = log_lines(capsys)
    assert [message.split(": allowlist: ")[0] for _, message in out] == [
        "POST /tasks -> 422 refused (token admin_token)",
        "PUT /tasks/pwn -> 422 refused (token admin_token)",
        "PATCH /tasks/nightly -> 422 refused (token admin_token)",
        "POST /tasks/maint/resume -> 403 refused (token admin_token)",
        "POST /tasks/nightly/run -> 403 refused (token admin_token)",
    ]
    assert {level for level, _ in out} == {"WARNING"}
    assert out[0][1].split(": allowlist: ")[1].startswith("function: 'os:system' is not allowed through the API")
    assert out[1][1].split(": allowlist: ")[1].startswith("type: task type 'shell' is not allowed")
    assert out[4][1].split(": allowlist: ")[1].startswith("function: 'sts_core.testing:noop' is not allowed")
    assert not any(ADMIN in message for _, message in out)


def test_ordinary_errors_are_not_refusals(api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert api.client.post("/tasks", task_body("bad", cron="61 * * * *")).status == 422
    assert api.client.get("/tasks/missing").status == 404
    assert api.client.post("/tasks/missing/run").status == 404
    assert log_lines(capsys) == []


def test_a_refused_path_is_logged_on_one_line_with_its_control_characters_escaped(
        api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    forged = "/tasks/x%1b[2J%1b]0;owned%07%0d%0a2026-12-08%2002:14:03.120Z%20ERROR%20sts.api%20%20forged"
    assert api.client.get(forged, token=None).status == 401
    assert log_lines(capsys) == [
        ("WARNING", "GET /tasks/x\\x1b[2J\\x1b]0;owned\\x07\\r\\n2026-12-08 02:14:03.120Z ERROR sts.api  forged "
                    "-> 401 refused (token none): missing bearer token: send the header 'Authorization: Bearer "
                    "<token>'"),
    ]


def test_a_very_long_path_is_shortened_in_the_log(api: RunningApi, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert api.client.get("/tasks/" + "a" * 5000, token=None).status == 401
    [(_, message)] = log_lines(capsys)
    assert message.startswith("GET /tasks/aaa") and len(message) < 500


def test_a_server_error_logs_the_path_escaped_and_the_traceback_on_its_own_lines(
        api: RunningApi, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(name: str, version: int | None = None) -> None:
        raise RuntimeError("store broke\x1b[31m")

    monkeypatch.setattr(api.scheduler.asyncio_scheduler, "get_task", broken)
    capsys.readouterr()
    reply = api.client.get("/tasks/x%1b[2J%0aFORGED", token=READ)
    assert reply.status == 500 and reply.json["error"] == "internal"
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(" ERROR sts.api  GET /tasks/x\\x1b[2J\\nFORGED failed"), lines
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: store broke\\x1b[31m"
    assert not any("\x1b" in line for line in lines)
