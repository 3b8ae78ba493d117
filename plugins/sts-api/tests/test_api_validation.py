"""Bad input is a 4xx naming what is wrong (key path and message, as for task files), never a
500, and a rejected request leaves the stored task exactly as it was."""

from __future__ import annotations

import sys

import pytest
from sts_api_helpers import RunningApi, running_api, task_body

from sts.plugin import Option, hookimpl, plugin_added


def problems(reply) -> list[tuple[str, str]]:
    return [(p["path"], p["message"]) for p in reply.json["problems"]]


@pytest.mark.parametrize(
    ("body", "path", "message"),
    [
        ({"function": "sts_api_jobs:noop"}, "name", "required: every task needs a name"),
        (task_body("t", retrys=2), "retrys", "unknown task option (did you mean 'retries'?)"),
        (task_body("t", retries=-1), "retries", "expected a whole number >= 0, got -1"),
        (task_body("t", retries="3"), "retries", "expected a whole number >= 0, got '3'"),
        (task_body("t", cron="61 * * * *"), "cron", "invalid cron expression"),
        (task_body("t", every="soon"), "every", "expected a duration such as 30s"),
        (task_body("t", every="1h", cron="* * * * *"), "cron", "a task has at most one trigger"),
        (task_body("t", timezone="Europe/Berln"), "timezone", "did you mean 'Europe/Berlin'?"),
        (task_body("t", parent_tasks=["nobody"]), "parent_tasks", "unknown parent 'nobody'"),
        (task_body("t", "nosuch"), "function", "module 'sts_api_jobs' has no attribute 'nosuch'"),
        (task_body("t", kwargs={"x": 1}), "kwargs", "got an unexpected keyword argument 'x'"),
        (task_body("t", type="nosuch"), "type", "task type 'nosuch' is not allowed through the API"),
        (task_body("t", trigger={"kind": "lunar"}), "trigger.kind", "unknown trigger 'lunar'"),
        (task_body("t", alerts={"slak": {}}), "alerts.slak", "unknown alerting plugin 'slak'"),
        (task_body("bad name"), "name", "expected a task name of letters, digits"),
        (task_body("trailing\n"), "name", "expected a task name of letters, digits"),
        (task_body("t", jitter=1e300, every=1), "jitter", "expected a duration of at most ten years"),
        (task_body("t", timeout="inf"), "timeout", "expected a duration of at most ten years"),
        (task_body("t", timeout="1000w"), "timeout", "expected a duration of at most ten years"),  # < 100 years
        (task_body("t", retry_delay="6000w"), "retry_delay", "expected a duration of at most ten years"),  # > 100
        (task_body("t", trigger={"kind": "interval", "every": 3e11}), "trigger.every",
         "expected a duration of at most ten years"),
        (task_body("t", trigger={"kind": "delay", "delay": "1e400"}), "trigger.delay",
         "expected a duration of at most ten years"),
        (task_body("t", backoff=1e308, retries=5), "backoff", "expected a number from 1 to 100, got 1e+308"),
        (task_body("t", retries=10**30), "retries", "expected a whole number from 0 to 1000"),
        (task_body("t", max_instances=10**30), "max_instances", "expected a whole number from 1 to 10000"),
        (task_body("t", at="9999-12-31T23:59:59+00:00", jitter=100), "at",
         "expected a date-time between the years 1900 and 9000, got '9999-12-31T23:59:59+00:00'"),
        (task_body("t", every="1h", start="9001-01-01T00:00:00"), "start", "between the years 1900 and 9000"),
        (task_body("t", every="1h", end="0001-01-01T00:00:00+00:00"), "end", "between the years 1900 and 9000"),
        (task_body("t", trigger={"kind": "date", "at": "9999-12-31T23:59:59"}), "trigger.at",
         "between the years 1900 and 9000"),
        (task_body("t", trigger={"kind": "cron", "cron": "* * * * *", "start": "9999-12-31T23:59:30+00:00"}),
         "trigger.start", "between the years 1900 and 9000"),
        ([task_body("t")], "", "expected a JSON object of task options"),
    ],
)
def test_invalid_tasks_are_422_with_the_key_path_and_message(api: RunningApi, body, path: str, message: str) -> None:
    reply = api.client.post("/tasks", body)
    assert reply.status == 422, reply.body
    assert reply.json["error"] == "validation"
    assert any(p == path and message in m for p, m in problems(reply)), problems(reply)
    assert api.client.get("/tasks").json["tasks"] == []


def test_every_problem_is_reported_at_once(api: RunningApi) -> None:
    reply = api.client.post("/tasks", {"name": "t", "function": "sts_api_jobs:noop", "retries": -1, "colour": 1,
                                       "every": "never"})
    assert reply.status == 422
    assert {path for path, _ in problems(reply)} == {"colour", "retries", "every"}
    assert reply.json["message"] == "the request is invalid"


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "error", "message"),
    [
        (b'{"name": "t",', "application/json", 400, "malformed_json", "malformed JSON at line 1, column 14"),
        (b"", "application/json", 400, "malformed_json", "the request needs a JSON body"),
        (b'{"name": NaN}', "application/json", 400, "malformed_json", "NaN is not a JSON number"),
        (b"\xff\xfe", "application/json", 400, "malformed_json", "the body is not UTF-8 text"),
        (b'{"name": "\\ud800"}', "application/json", 400, "malformed_json", "unpaired surrogate"),
        (b"[" * 100_000, "application/json", 413, "too_large", "larger than 65536 bytes (api.max_body_bytes)"),
        (b"[" * 5_000 + b"]" * 5_000, "application/json", 400, "malformed_json", ""),
        (b"name=t", "application/x-www-form-urlencoded", 415, "unsupported_media_type", "expected a JSON body"),
        (b'{"name": "t"}', None, 415, "unsupported_media_type", "got no Content-Type"),
        (b'{"name": "t"}', "application/evil+json", 415, "unsupported_media_type", "got 'application/evil+json'"),
        (b'{"name": "t"}', "text/json", 415, "unsupported_media_type", "got 'text/json'"),
        (b'{"name": "t", "every": 1e400}', "application/json", 422, "validation",
         "every: expected a finite number: this one is too large for a 64-bit float (it reads as infinity)"),
        (b'{"name": "t", "every": -1e400}', "application/json", 422, "validation", "every: expected a finite number"),
        (b'{"name": "t", "kwargs": {"x": [1, {"y": 1e999}]}}', "application/json", 422, "validation",
         "kwargs.x[1].y: expected a finite number"),
        (b"1e400", "application/json", 422, "validation", "expected a finite number"),
        (b'{"name": "t", "every": 1' + b"0" * 5000 + b"}", "application/json", 422, "validation",
         "every: expected a finite number: this one is too large"),
        (b'{"name": "t", "args": [-1' + b"0" * 5000 + b"]}", "application/json", 422, "validation",
         "args[0]: expected a finite number"),
    ],
)
def test_bodies_that_are_not_json_are_refused_before_validation(api: RunningApi, raw: bytes, content_type: str | None,
                                                                status: int, error: str, message: str) -> None:
    reply = api.client.call("POST", "/tasks", raw=raw, content_type=content_type)
    assert (reply.status, reply.json["error"]) == (status, error), reply.body
    assert message in reply.json["message"]
    assert api.client.get("/tasks").json["tasks"] == []


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_media_types_are_accepted(api: RunningApi, content_type: str) -> None:
    reply = api.client.call("POST", "/tasks", raw=b'{"name": "t", "function": "sts_api_jobs:noop", "every": "1h"}',
                            content_type=content_type)
    assert reply.status == 201, reply.body


def test_non_finite_numbers_are_refused_anywhere_and_counted(api: RunningApi) -> None:
    args = ", ".join(["1e400"] * 80)
    reply = api.client.call("POST", "/tasks", raw=f'{{"name": "t", "args": [{args}]}}'.encode())
    assert reply.status == 422
    assert reply.json["message"] == "the request is invalid: 80 problems, the first 50 listed"
    assert [p["path"] for p in reply.json["problems"]] == [f"args[{i}]" for i in range(50)]
    patched = api.client.call("PATCH", "/tasks/t", raw=b'{"retry_delay": 1e400}',
                              content_type="application/merge-patch+json")
    assert patched.status == 422 and patched.json["problems"][0]["path"] == "retry_delay"


def test_thousands_of_unknown_options_are_cut_off_after_fifty(api: RunningApi) -> None:
    body = task_body("t", **{f"retrx{i}": 1 for i in range(4000)})
    reply = api.client.post("/tasks", body)
    assert reply.status == 422
    assert reply.json["message"] == "the request is invalid: 4000 problems, the first 50 listed"
    assert len(reply.json["problems"]) == 50
    assert reply.json["problems"][0] == {"path": "retrx0", "message": "unknown task option (did you mean 'retries'?)"}
    api.client.post("/tasks", task_body("keep", every="1h"))
    patched = api.client.call("PATCH", "/tasks/keep", {f"retrx{i}": 1 for i in range(4000)})
    assert patched.status == 422 and len(patched.json["problems"]) == 50 and "4000 problems" in patched.json["message"]


@pytest.mark.parametrize("length", [65_537, 10**19, 10**20, 10**25, 10**400])
def test_any_content_length_over_the_limit_is_413_however_large(api: RunningApi, length: int) -> None:
    """h11 refuses a Content-Length of more than 20 digits as malformed; it is over the limit all
    the same."""
    reply = api.client.call("POST", "/tasks", raw=b"{}", headers={"Content-Length": str(length)})
    assert (reply.status, reply.json["error"]) == (413, "too_large"), reply.body
    assert reply.json["message"] == "the body is larger than 65536 bytes (api.max_body_bytes)"
    assert api.client.get("/tasks").json["tasks"] == []


def test_a_long_content_length_of_leading_zeros_is_no_refusal_for_size(api: RunningApi) -> None:
    reply = api.client.call("POST", "/tasks", raw=b"{}", headers={"Content-Length": "0" * 30 + "2"})
    assert reply.status == 400 and reply.json["error"] == "malformed_request"


def test_a_body_streamed_past_the_limit_is_cut_off_at_the_limit() -> None:
    with running_api(max_body_bytes=2048) as api:
        chunked = api.client.call("POST", "/tasks", chunks=[b'{"name": "t", "description": "', b"x" * 1024] * 4)
        assert chunked.status == 413 and "2048 bytes" in chunked.json["message"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/tasks/keep", {"retries": -1}),
        ("PATCH", "/tasks/keep", {"function": "os:system"}),
        ("PATCH", "/tasks/keep", {"name": "renamed"}),
        ("PATCH", "/tasks/keep", {"every": None, "parent_tasks": ["keep"]}),
        ("PATCH", "/tasks/keep", ["not", "an", "object"]),
        ("PATCH", "/tasks/keep", {"retrys": None}),
        ("PUT", "/tasks/keep", {"function": "sts_api_jobs:say", "every": "1h", "timezone": "Mars/Olympus"}),
        ("PUT", "/tasks/keep", {"function": "sts_api_jobs:say", "cron": "* * *"}),
    ],
)
def test_a_rejected_change_leaves_the_stored_task_exactly_as_it_was(api: RunningApi, method: str, path: str,
                                                                    body) -> None:
    api.client.post("/tasks", task_body("keep", "say", kwargs={"text": "kept"}, every="1h", retries=1))
    before = api.client.get("/tasks/keep").json
    reply = api.client.call(method, path, body)
    assert reply.status == 422, reply.body
    assert api.client.get("/tasks/keep").json == before
    assert api.client.get("/tasks/keep/versions/2").status == 404


def test_a_run_query_with_bad_parameters_names_each(api: RunningApi) -> None:
    reply = api.client.get("/runs?limit=0&offset=-1&state=done&since=yesterday&stat=failed")
    assert reply.status == 422
    found = dict(problems(reply))
    assert found["query.limit"] == "expected a whole number from 1 to 1000, got '0'"
    assert found["query.offset"] == "expected a whole number from 0 to 100000, got '-1'"
    assert found["query.state"].startswith("expected one of scheduled, running, succeeded")
    assert found["query.since"].startswith("expected an ISO 8601 date-time")
    assert found["query.stat"].startswith("unknown parameter (did you mean 'state'?)")


def test_unknown_paths_and_methods_answer_json(api: RunningApi) -> None:
    missing = api.client.get("/nowhere")
    assert missing.status == 404 and missing.json["error"] == "not_found"
    wrong = api.client.call("PUT", "/runs")
    assert wrong.status == 405 and wrong.headers["allow"] == "GET" and wrong.json["error"] == "method_not_allowed"
    slash = api.client.get("/tasks/")
    assert slash.status == 404


# --- issue 14: integers too large for a float, zero timeouts, every problem at once -------------------

HUGE_OPTIONS = ["every", "timeout", "delay", "jitter", "retry_jitter", "max_retry_delay", "misfire_grace_time",
                "backoff", "retries", "max_instances"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("option", HUGE_OPTIONS)
def test_an_integer_too_large_for_a_float_is_422_on_every_change(api: RunningApi, method: str, option: str) -> None:
    assert api.client.post("/tasks", task_body("keep", every="1h")).status == 201
    before = api.client.get("/tasks/keep").json
    options = {option: 10**309} if option in ("every", "delay") else {"every": "1h", option: 10**309}
    if method == "POST":
        reply = api.client.post("/tasks", task_body("new", **options))
    elif method == "PUT":
        reply = api.client.call("PUT", "/tasks/keep", task_body("keep", **options))
    else:  # a delay replaces the stored task's every: null removes it
        patch = {**options, "every": None} if option == "delay" else options
        reply = api.client.call("PATCH", "/tasks/keep", patch, content_type="application/merge-patch+json")
    assert reply.status == 422, reply.body
    [message] = [m for path, m in problems(reply) if path == option]
    assert message.startswith("expected") and len(message) < 200, message
    assert api.client.get("/tasks/keep").json == before
    assert api.client.get("/tasks/new").status == 404


def test_a_task_timeout_of_zero_is_422(api: RunningApi) -> None:
    reply = api.client.post("/tasks", task_body("t", every="1h", timeout=0))
    assert reply.status == 422
    assert problems(reply) == [("timeout", "expected a duration greater than zero such as 30s, 5m or 1h30m, got 0")]


def test_model_and_plugin_problems_are_reported_together(api: RunningApi) -> None:
    reply = api.client.post("/tasks", task_body("t", "nosuch", cron="99 * * * *", retries=-1, evry=3))
    assert reply.status == 422
    found = dict(problems(reply))
    assert set(found) == {"function", "cron", "retries", "evry"}, found
    assert found["function"] == "module 'sts_api_jobs' has no attribute 'nosuch'"
    assert found["cron"].startswith("invalid cron expression '99 * * * *': bad minute field '99'")
    assert found["retries"] == "expected a whole number >= 0, got -1"
    assert found["evry"] == "unknown task option (did you mean 'every'?)"


def test_plugin_problems_come_with_the_api_limits(api: RunningApi) -> None:
    reply = api.client.post("/tasks", task_body("t", cron="0 0 31 2 *", retries=5000, kwargs={"nope": 1}))
    assert reply.status == 422
    found = dict(problems(reply))
    # the cron expression is checked when the task is built (the option belongs to sts-triggers), the API's
    # limit on retries after that, the function's signature by the task type last
    assert list(found) == ["cron", "retries", "kwargs"]
    assert found["retries"] == "expected a whole number from 0 to 1000, got 5000"
    assert "got an unexpected keyword argument 'nope'" in found["kwargs"]


def test_a_function_the_allowlist_refuses_is_never_imported_to_find_more_problems(api: RunningApi) -> None:
    reply = api.client.post("/tasks", {"name": "t", "function": "sts_api_never_imported:fn", "retries": -1})
    assert reply.status == 422
    assert {path for path, _ in problems(reply)} == {"function", "retries"}
    assert "not allowed" in dict(problems(reply))["function"] or "allowed" in dict(problems(reply))["function"]
    assert "sts_api_never_imported" not in sys.modules



def _channel(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("#"):
        raise ValueError(f"expected a channel name such as '#ops', got {value!r}")
    return value


class _Channels:
    """A third party's task type with its own option, ``channel`` (issue 15)."""

    @hookimpl
    def register_task_types(self, register) -> None:
        register("notify", object(), options=[Option("channel", _channel)])


def test_a_third_party_task_types_options_are_checked_in_a_body_like_the_standard_ones(api: RunningApi) -> None:
    with plugin_added("channels", _Channels()):
        reply = api.client.post("/tasks", {"name": "p", "type": "notify", "channel": "ops", "every": "1m"})
        assert reply.status == 422
        assert ("channel", "expected a channel name such as '#ops', got 'ops'") in problems(reply)
        reply = api.client.post("/tasks", {"name": "p", "type": "notify", "chanel": "#ops"})
        assert reply.status == 422
        assert ("chanel", "unknown task option (did you mean 'channel'?)") in problems(reply)
