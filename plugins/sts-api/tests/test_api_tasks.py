"""Tasks through the API: create, fire, read, replace, patch, pause, resume, run, delete; every
change a new version; invalid input a 4xx that changes nothing."""

from __future__ import annotations

import concurrent.futures
import time

from sts_api_helpers import READ, RunningApi, task_body, wait_for

from sts.plugin import Task


def test_a_task_created_through_the_api_fires_and_its_run_is_listed(api: RunningApi) -> None:
    reply = api.client.post("/tasks", task_body("greet", "say", kwargs={"text": "hello"}, every="0.2s"))
    assert reply.status == 201, reply.body
    assert reply.headers["location"] == "/tasks/greet" and reply.headers["etag"] == '"1"'
    created = reply.json
    assert created["task"] == {"name": "greet", "function": "sts_api_jobs:say", "kwargs": {"text": "hello"},
                               "every": 0.2, "version": 1}
    assert created["state"] == "active" and created["next_fire"] is not None

    runs = wait_for(lambda: [r for r in api.runs("greet") if r["state"] == "succeeded"])
    assert runs[0]["task_version"] == 1 and runs[0]["reason"] == "schedule"
    assert "output" not in runs[0]  # lists leave out output and traceback
    full = api.client.get(f"/runs/{runs[0]['id']}").json
    assert full["output"] == "hello\n" and full["result"] == "hello" and full["traceback"] is None


def test_a_failed_run_shows_its_error_traceback_and_output(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("broken", "fail", kwargs={"message": "disk full"}))
    (run,) = wait_for(lambda: [r for r in api.runs("broken") if r["state"] == "failed"])
    assert (run["error_type"], run["error_message"]) == ("ValueError", "disk full")
    full = api.client.get(f"/runs/{run['id']}").json
    assert full["output"] == "about to fail\n"
    assert "ValueError: disk full" in full["traceback"] and "sts_api_jobs.py" in full["traceback"]


def test_every_change_is_a_new_version_and_old_runs_keep_theirs(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("report", "say", kwargs={"text": "v1"}, every="1h"))
    assert api.client.post("/tasks/report/run").status == 202
    wait_for(lambda: api.runs("report", state="succeeded"))
    replaced = api.client.call("PUT", "/tasks/report", task_body("report", "say", kwargs={"text": "v2"}, every="1h"))
    assert replaced.status == 200 and replaced.json["task"]["version"] == 2
    assert api.client.post("/tasks/report/run").status == 202
    wait_for(lambda: len(api.runs("report", state="succeeded")) == 2)
    newest, oldest = api.runs("report")
    assert (newest["task_version"], oldest["task_version"]) == (2, 1)
    assert api.client.get(f"/runs/{oldest['id']}").json["output"] == "v1\n"
    assert api.client.get(f"/runs/{newest['id']}").json["output"] == "v2\n"
    old = api.client.get("/tasks/report/versions/1")
    assert old.status == 200 and old.json["kwargs"] == {"text": "v1"} and old.headers["etag"] == '"1"'
    assert api.client.get("/tasks/report/versions/9").status == 404


def test_an_unchanged_definition_stores_no_new_version(api: RunningApi) -> None:
    body = task_body("same", every="1h")
    api.client.post("/tasks", body)
    again = api.client.call("PUT", "/tasks/same", body)
    assert again.status == 200 and again.json["task"]["version"] == 1
    assert api.client.call("PATCH", "/tasks/same", {"every": 3600}).json["task"]["version"] == 1


def test_put_creates_a_task_that_does_not_exist_yet(api: RunningApi) -> None:
    reply = api.client.call("PUT", "/tasks/fresh", {"function": "sts_api_jobs:noop", "every": "1h"})
    assert reply.status == 201 and reply.headers["location"] == "/tasks/fresh"
    assert reply.json["task"]["name"] == "fresh"


def test_patch_merges_into_the_definition_and_null_removes_an_option(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("etl", "collect", kwargs={"text": "a"}, every="1h", retries=2, tags=["x"]))
    reply = api.client.call("PATCH", "/tasks/etl", {"kwargs": {"extra": 1}, "retries": None, "cron": "0 * * * *",
                                                    "every": None},
                            headers={"Content-Type": "application/merge-patch+json"})
    assert reply.status == 200, reply.body
    assert reply.json["task"] == {"name": "etl", "function": "sts_api_jobs:collect",
                                  "kwargs": {"text": "a", "extra": 1}, "cron": "0 * * * *", "tags": ["x"], "version": 2}


def test_pause_and_resume_store_new_versions_and_stop_firing(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("tick", every="0.1s"))
    wait_for(lambda: api.runs("tick"))
    paused = api.client.post("/tasks/tick/pause")
    assert paused.status == 200
    assert (paused.json["state"], paused.json["next_fire"], paused.json["task"]["version"]) == ("paused", None, 2)
    assert paused.json["task"]["enabled"] is False
    assert api.client.post("/tasks/tick/pause").json["task"]["version"] == 2  # already paused: no new version
    count = len(wait_for(lambda: api.runs("tick", limit=1000)))
    time.sleep(0.4)
    assert len(api.runs("tick", limit=1000)) <= count + 1  # at most one fire was already on its way
    resumed = api.client.post("/tasks/tick/resume")
    assert (resumed.json["state"], resumed.json["task"]["version"]) == ("active", 3)
    assert "enabled" not in resumed.json["task"]  # back to the default
    wait_for(lambda: any(r["task_version"] == 3 for r in api.runs("tick")))


def test_run_now_queues_a_run_for_the_workers(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("manual", "say", kwargs={"text": "now"}, every="1h"))
    reply = api.client.post("/tasks/manual/run")
    assert reply.status == 202
    run = reply.json["run"]
    assert (run["state"], run["reason"], run["task_version"]) == ("scheduled", "api", 1)
    assert reply.headers["location"] == f"/runs/{run['id']}"
    done = wait_for(lambda: api.client.get(f"/runs/{run['id']}").json.get("state") == "succeeded")
    assert done


def test_run_now_beyond_max_instances_queues_behind_the_active_run(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("long", "slow", kwargs={"seconds": 0.5}))
    wait_for(lambda: api.runs("long", state="running"))
    reply = api.client.post("/tasks/long/run")
    assert reply.status == 202
    queued = reply.json["run"]
    assert queued["waits_for_instance"] is True
    assert "max_instances=1" in queued["reason"]
    wait_for(lambda: {run["fire_id"] for run in api.runs("long", state="succeeded")} >= {queued["fire_id"]})


def test_delete_removes_the_task_but_not_its_runs(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("gone"))
    wait_for(lambda: api.runs("gone", state="succeeded"))
    reply = api.client.call("DELETE", "/tasks/gone")
    assert reply.status == 204 and reply.body == b""
    assert api.client.get("/tasks/gone").status == 404
    assert api.client.call("DELETE", "/tasks/gone").status == 404
    assert api.runs("gone")


def test_a_parent_cannot_be_deleted_while_a_child_names_it(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("parent", every="1h"))
    api.client.post("/tasks", task_body("child", parent_tasks=["parent"]))
    reply = api.client.call("DELETE", "/tasks/parent")
    assert reply.status == 409 and reply.json == {
        "error": "in_use", "message": "task 'parent' is a parent of child; remove or change those tasks first"}
    assert api.client.get("/tasks/parent").status == 200


def test_list_and_get_tasks(api: RunningApi) -> None:
    for name in ("b", "a"):
        api.client.post("/tasks", task_body(name, every="1h"))
    listed = api.client.get("/tasks", token=READ)
    assert [item["task"]["name"] for item in listed.json["tasks"]] == ["a", "b"]
    one = api.client.get("/tasks/a", token=READ)
    assert one.status == 200 and one.json == listed.json["tasks"][0] and one.headers["etag"] == '"1"'
    missing = api.client.get("/tasks/nope")
    assert missing.status == 404 and missing.json == {"error": "not_found", "message": "no task named 'nope'"}


def test_a_name_taken_is_a_conflict(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("twice", every="1h"))
    reply = api.client.post("/tasks", task_body("twice", every="5m"))
    assert reply.status == 409 and reply.json["error"] == "exists"
    assert "change it with PUT or PATCH /tasks/twice" in reply.json["message"]
    assert api.client.get("/tasks/twice").json["task"]["every"] == 3600.0


def test_if_match_makes_a_change_conditional_on_the_version(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("guarded", every="1h"))
    stale = api.client.call("PATCH", "/tasks/guarded", {"every": "5m"}, headers={"If-Match": '"7"'})
    assert stale.status == 412 and stale.json["error"] == "version_mismatch" and stale.headers["etag"] == '"1"'
    body_version = api.client.call("PATCH", "/tasks/guarded", {"every": "5m", "version": 7})
    assert body_version.status == 412
    fresh = api.client.call("PATCH", "/tasks/guarded", {"every": "5m"}, headers={"If-Match": '"1"'})
    assert fresh.status == 200 and fresh.json["task"]["version"] == 2
    assert api.client.call("DELETE", "/tasks/guarded", headers={"If-Match": '"1"'}).status == 412
    assert api.client.call("PUT", "/tasks/nothing", task_body("nothing"), headers={"If-Match": "*"}).status == 412
    assert api.client.call("DELETE", "/tasks/guarded", headers={"If-Match": "*"}).status == 204


def test_concurrent_patches_of_one_task_all_land_each_as_its_own_version(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("shared", "collect", every="1h"))

    def patch(index: int) -> tuple[int, int]:
        reply = api.client.call("PATCH", "/tasks/shared", {"kwargs": {f"k{index}": index}})
        return reply.status, reply.json["task"]["version"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(patch, range(20)))
    assert {status for status, _ in results} == {200}
    assert sorted(version for _, version in results) == list(range(2, 22))  # none lost, none shared
    final = api.client.get("/tasks/shared").json["task"]
    assert final["version"] == 21 and final["kwargs"] == {f"k{i}": i for i in range(20)}


def test_concurrent_conditional_replacements_let_exactly_one_win(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("race", "say", every="1h"))

    def replace(index: int) -> int:
        body = task_body("race", "say", kwargs={"text": str(index)}, every="1h")
        return api.client.call("PUT", "/tasks/race", body, headers={"If-Match": '"1"'}).status

    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
        statuses = sorted(pool.map(replace, range(10)))
    assert statuses == [200] + [412] * 9
    assert api.client.get("/tasks/race").json["task"]["version"] == 2


def test_a_task_added_in_process_with_a_plain_callable_is_shown_and_paused_but_not_patched(api: RunningApi) -> None:
    api.scheduler.add_task(Task("anon", function=lambda: None, every=3600))
    shown = api.client.get("/tasks/anon").json["task"]
    assert shown["function"].startswith("<callable ") and shown["every"] == 3600.0
    refused = api.client.call("PATCH", "/tasks/anon", {"every": "2h"})
    assert refused.status == 409 and refused.json["error"] == "not_editable"
    assert api.client.post("/tasks/anon/pause").json["state"] == "paused"
