"""The allowlist: through the API a token holder can store only tasks of allowed types that run
allowed functions or commands, so an admin token is not a way to run ``os:system`` or any shell
command on the workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sts_api_helpers import RunningApi, running_api, task_body, wait_for

from sts_api.allowlist import Allowlist
from sts_core.model import Task


def refused(reply) -> list[tuple[str, str]]:
    assert reply.status == 422, reply.body
    return [(p["path"], p["message"]) for p in reply.json["problems"]]


def test_os_system_is_refused_and_nothing_is_stored(api: RunningApi) -> None:
    reply = api.client.post("/tasks", {"name": "pwn", "function": "os:system", "args": ["touch /tmp/pwned"]})
    assert refused(reply) == [("function", "'os:system' is not allowed through the API: it matches none of "
                                           "api.allowed_functions (sts_api_jobs:*)")]
    assert api.client.get("/tasks/pwn").status == 404
    assert api.runs("pwn") == []


def test_a_changed_function_must_be_allowed_too(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("job", every="1h"))
    assert refused(api.client.call("PATCH", "/tasks/job", {"function": "subprocess:run"}))[0][0] == "function"
    replaced = api.client.call("PUT", "/tasks/job", {"function": "builtins:eval", "args": ["1"]})
    assert refused(replaced)[0][0] == "function"
    assert api.client.get("/tasks/job").json["task"]["function"] == "sts_api_jobs:noop"


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("sts_api_jobs:os.system", "reaches into module 'os' through 'sts_api_jobs'"),
        ("sts_api_jobs:run", "is not defined in 'sts_api_jobs' (it comes from 'subprocess')"),
    ],
)
def test_an_allowed_module_cannot_be_used_to_reach_what_it_imports(api: RunningApi, function: str,
                                                                   message: str) -> None:
    (problem,) = refused(api.client.post("/tasks", {"name": "sneaky", "function": function}))
    assert problem[0] == "function" and message in problem[1]


def test_shell_tasks_are_off_by_default(api: RunningApi) -> None:
    reply = api.client.post("/tasks", {"name": "sh", "type": "shell", "command": "echo hi"})
    assert refused(reply) == [("type", "task type 'shell' is not allowed through the API "
                                       "(api.allowed_task_types: python)")]


@pytest.fixture
def shell_api() -> Iterator[RunningApi]:
    commands = ["echo *", "/usr/bin/backup --full"]
    with running_api(allowed_task_types=["python", "shell"], allowed_commands=commands) as api:
        yield api


def test_an_unlisted_shell_command_is_refused(shell_api: RunningApi) -> None:
    reply = shell_api.client.post("/tasks", {"name": "wipe", "type": "shell", "command": "rm -rf /tmp/x"})
    assert refused(reply) == [("command", "'rm -rf /tmp/x' is not allowed through the API: it matches none of "
                                          "api.allowed_commands ('echo *', '/usr/bin/backup --full')")]
    assert shell_api.client.get("/tasks/wipe").status == 404


@pytest.mark.parametrize(
    "command",
    ["echo hi; rm -rf /tmp/x", "echo $(id)", "echo `id`", "echo hi && id", "echo hi | sh", "echo hi\nid",
     "echo * ", "/usr/bin/backup --full --and-more", ["rm", "-rf", "/tmp/x"]],
)
def test_a_wildcard_never_matches_shell_syntax(shell_api: RunningApi, command) -> None:
    reply = shell_api.client.post("/tasks", {"name": "inject", "type": "shell", "command": command})
    assert refused(reply)[0][0] == "command"


def test_a_listed_shell_command_runs(shell_api: RunningApi) -> None:
    reply = shell_api.client.post("/tasks", {"name": "greet", "type": "shell", "command": "echo hello from sh"})
    assert reply.status == 201, reply.body
    (run,) = wait_for(lambda: shell_api.runs("greet", state="succeeded"))
    assert shell_api.client.get(f"/runs/{run['id']}").json["output"] == "hello from sh\n"


def test_a_shell_environment_cannot_be_set_through_the_api(shell_api: RunningApi) -> None:
    reply = shell_api.client.post("/tasks", {"name": "env", "type": "shell", "command": "echo hi",
                                             "params": {"env": {"LD_PRELOAD": "/tmp/evil.so"}}})
    assert refused(reply)[0][0] == "params.env"


def test_pause_resume_and_run_do_not_need_the_allowlist(api: RunningApi) -> None:
    api.scheduler.add_task(Task("from_file", function="sts_core.testing:noop", every=3600))  # not allowed via API
    assert api.client.post("/tasks/from_file/pause").status == 200
    assert api.client.post("/tasks/from_file/resume").status == 200
    assert api.client.post("/tasks/from_file/run").status == 202
    assert refused(api.client.call("PATCH", "/tasks/from_file", {"every": "2h"}))[0][0] == "function"


def test_patterns() -> None:
    allowlist = Allowlist(task_types=["python", "shell"], functions=["reports.*:build_*", "cleanup"],
                          commands=["rsync -a */ *", "date", "ls ?"])
    assert allowlist.function_allowed("reports.daily:build_pdf")
    assert allowlist.function_allowed("cleanup")
    assert not allowlist.function_allowed("reports.daily:delete_all")
    assert not allowlist.function_allowed("Cleanup")  # case-sensitive
    assert allowlist.command_allowed("rsync -a out/ web:/srv")
    assert allowlist.command_allowed(["rsync", "-a", "in/", "backup"])
    assert not allowlist.command_allowed("rsync -a out/ web:/srv; reboot")
    assert not allowlist.command_allowed("date -s 2000-01-01")
    assert allowlist.command_allowed("ls x") and not allowlist.command_allowed("ls xy")
    assert allowlist.problems(Task("t", command="date", type="shell")) == []
    assert [p.key_path for p in allowlist.problems(Task("t", command="reboot", type="shell"))] == ["command"]


def test_an_empty_function_list_allows_no_python_task() -> None:
    with running_api(allowed_functions=[]) as api:
        (problem,) = refused(api.client.post("/tasks", task_body("t")))
        assert problem == ("function", "'sts_api_jobs:noop' is not allowed through the API: it matches none of "
                                       "api.allowed_functions (empty: no function may be used)")
