"""Runs: filtered by task, state and time range, paginated newest first; one run in full."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import quote

import pytest
from sts_api_helpers import RunningApi, running_api, task_body, wait_for


def run_now(api: RunningApi, name: str) -> str:
    run_id = api.client.post(f"/tasks/{name}/run").json["run"]["id"]
    wait_for(lambda: api.client.get(f"/runs/{run_id}").json.get("state") in ("succeeded", "failed"))
    return run_id


@pytest.fixture(scope="module")
def history() -> Iterator[tuple[RunningApi, dict[str, list[str]], str]]:
    """Three runs of ``ok`` and two of ``bad``; ``middle`` lies between the second and third of ``ok``."""
    with running_api() as api:
        api.client.post("/tasks", task_body("ok", every="1h"))
        api.client.post("/tasks", task_body("bad", "fail", every="1h"))
        ids = {"ok": [run_now(api, "ok"), run_now(api, "ok")], "bad": [run_now(api, "bad")]}
        time.sleep(0.01)
        middle = datetime.now(UTC).isoformat()
        time.sleep(0.01)
        ids["ok"].append(run_now(api, "ok"))
        ids["bad"].append(run_now(api, "bad"))
        yield api, ids, middle


def listed(api: RunningApi, query: str) -> dict:
    reply = api.client.get(f"/runs?{query}")
    assert reply.status == 200, reply.body
    return reply.json


def ids_of(page: dict) -> list[str]:
    return [run["id"] for run in page["runs"]]


def test_runs_are_listed_newest_first(history) -> None:
    api, ids, _ = history
    assert ids_of(listed(api, "task=ok")) == ids["ok"][::-1]
    assert ids_of(listed(api, "")) == [ids["bad"][1], ids["ok"][2], ids["bad"][0], ids["ok"][1], ids["ok"][0]]


def test_runs_are_filtered_by_state(history) -> None:
    api, ids, _ = history
    assert ids_of(listed(api, "state=failed")) == ids["bad"][::-1]
    assert len(listed(api, "state=failed&state=succeeded")["runs"]) == 5
    assert listed(api, "state=timed_out")["runs"] == []
    assert listed(api, "task=nosuch")["runs"] == []


def test_runs_are_filtered_by_time_range(history) -> None:
    api, ids, middle = history
    assert set(ids_of(listed(api, f"since={quote(middle)}"))) == {ids["ok"][2], ids["bad"][1]}
    assert ids_of(listed(api, f"task=ok&until={quote(middle)}")) == ids["ok"][1::-1]
    naive = middle.removesuffix("+00:00")  # naive date-times are UTC
    assert ids_of(listed(api, f"task=bad&since={naive}")) == [ids["bad"][1]]
    assert listed(api, f"since={quote(middle)}&until={quote(middle)}")["runs"] == []


def test_runs_are_paginated(history) -> None:
    api, _, _ = history
    everything = ids_of(listed(api, "limit=1000"))
    first = listed(api, "limit=2")
    assert (ids_of(first), first["limit"], first["offset"], first["next_offset"]) == (everything[:2], 2, 0, 2)
    second = listed(api, "limit=2&offset=2")
    assert (ids_of(second), second["next_offset"]) == (everything[2:4], 4)
    last = listed(api, "limit=2&offset=4")
    assert (ids_of(last), last["next_offset"]) == (everything[4:], None)
    assert listed(api, "offset=99")["runs"] == []
    since_page = listed(api, "since=2000-01-01T00:00:00Z&limit=3&offset=1")
    assert (ids_of(since_page), since_page["next_offset"]) == (everything[1:4], 4)


def test_one_run_has_its_error_traceback_and_output(history) -> None:
    api, ids, _ = history
    run = api.client.get(f"/runs/{ids['bad'][0]}").json
    assert (run["task_name"], run["state"], run["reason"], run["task_version"]) == ("bad", "failed", "api", 1)
    assert (run["error_type"], run["error_message"], run["output"]) == ("ValueError", "boom", "about to fail\n")
    assert run["traceback"].startswith("Traceback") and run["duration"] >= 0
    missing = api.client.get("/runs/nosuch")
    assert missing.status == 404 and "no run with id 'nosuch'" in missing.json["message"]
