"""The allowlist: through the API a token holder can store only tasks of allowed types that run
allowed functions or commands, so an admin token is not a way to run ``os:system`` or any shell
command on the workers."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest
from sts_api_helpers import RunningApi, running_api, task_body, wait_for

from sts.plugin import Task
from sts_api.allowlist import Allowlist, FunctionPattern


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
def test_an_allowed_module_cannot_be_used_to_reach_what_it_imports(function: str, message: str) -> None:
    with running_api(allowed_functions=["sts_api_jobs:**"]) as api:  # ** lets the pattern reach os.system
        (problem,) = refused(api.client.post("/tasks", {"name": "sneaky", "function": function}))
        assert problem[0] == "function" and message in problem[1]


@pytest.mark.parametrize(
    ("function", "allowed"),
    [
        ("subprocess:getoutput", False),  # 'sub*' is for registered names: '*' never matches ':'
        ("os:popen", False),
        ("os.path:join", False),
        ("sub", True),  # a registered name
        ("sts_api_jobs:say", True),
    ],
)
def test_a_pattern_without_a_colon_matches_registered_names_only(function: str, allowed: bool,
                                                                 tmp_path) -> None:
    touched = tmp_path / "pwned"
    with running_api(allowed_functions=["sub*", "os*", "sts_api_jobs:*"]) as api:
        api.scheduler.register_function("sub", lambda: None)
        reply = api.client.post("/tasks", {"name": "p", "function": function, "args": [f"touch {touched}"]}
                                if function.startswith(("subprocess", "os")) else {"name": "p", "function": function})
        if allowed:
            assert reply.status == 201, reply.body
        else:
            assert refused(reply) == [("function", f"{function!r} is not allowed through the API: it matches none of "
                                                   "api.allowed_functions (sub*, os*, sts_api_jobs:*)")]
    assert not touched.exists()


@pytest.mark.parametrize(
    ("function", "kind"),
    [
        ("sts_api_jobs:Shell", "is a class"),  # a Popen subclass: would run args with shell=True
        ("sts_api_jobs:bound", "is a bound method"),
        ("sts_api_jobs:_Job.make", "is a bound method"),  # a classmethod
        ("sts_api_jobs:part", "is a partial object"),
        ("sts_api_jobs:builtin", "is a builtin"),
        ("sts_api_jobs:instance", "is not callable"),
    ],
)
def test_only_plain_functions_pass_never_classes_methods_builtins_or_partials(function: str, kind: str,
                                                                             tmp_path) -> None:
    touched = tmp_path / "pwned"
    with running_api(allowed_functions=["sts_api_jobs:**"]) as api:
        reply = api.client.post("/tasks", {"name": "c", "function": function,
                                           "kwargs": {"args": f"touch {touched}", "shell": True}})
        (problem,) = refused(reply)
        assert problem[0] == "function" and kind in problem[1], problem
        assert api.client.get("/tasks/c").status == 404
    assert not touched.exists()


def test_a_coroutine_function_and_a_static_method_defined_in_the_module_pass() -> None:
    with running_api(allowed_functions=["sts_api_jobs:later", "sts_api_jobs:_Job.*"]) as api:
        assert api.client.post("/tasks", {"name": "co", "function": "sts_api_jobs:later", "every": "1h"}).status == 201
        assert api.client.post("/tasks", {"name": "st", "function": "sts_api_jobs:_Job.plain",
                                          "every": "1h"}).status == 201


def test_no_module_is_imported_for_a_function_the_patterns_refuse() -> None:
    sys.modules.pop("sts_api_marker", None)
    with running_api(allowed_functions=["sts_api_marker:allowed_*", "sts_api_jobs:*"]) as api:
        for function in ("sts_api_marker:other", "sts_api_marker:allowed_job.__call__",
                         "sts_api_marker.sub:allowed_job"):
            assert refused(api.client.post("/tasks", {"name": "m", "function": function}))[0][0] == "function"
            assert "sts_api_marker" not in sys.modules, function
        assert api.client.post("/tasks", {"name": "m", "function": "sts_api_marker:allowed_job"}).status == 201
        assert "sts_api_marker" in sys.modules


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


def test_run_and_resume_refuse_a_task_the_api_could_not_create(api: RunningApi, tmp_path) -> None:
    log = tmp_path / "ran.log"
    api.scheduler.add_task(Task("maint", type="shell", command=f"echo ran >> {log}", enabled=False))
    api.scheduler.add_task(Task("nightly", function="sts_core.testing:noop", cron="0 3 * * *"))  # not allowed via API
    resumed = api.client.post("/tasks/maint/resume")
    assert resumed.status == 403 and resumed.json["error"] == "not_allowed"
    assert resumed.json["message"].startswith("task 'maint' cannot be resumed through the API: type: task type "
                                              "'shell' is not allowed through the API")
    assert "api.run_any_task" in resumed.json["message"] and resumed.json["problems"][0]["path"] == "type"
    ran = api.client.post("/tasks/nightly/run")
    assert ran.status == 403 and ran.json["problems"][0]["path"] == "function"
    assert "'sts_core.testing:noop' is not allowed through the API" in ran.json["message"]
    assert api.client.get("/tasks/maint").json["state"] == "paused" and api.runs("nightly") == []
    assert api.client.post("/tasks/nightly/pause").status == 200  # pausing and deleting stay possible
    assert api.client.call("DELETE", "/tasks/maint").status == 204
    assert refused(api.client.call("PATCH", "/tasks/nightly", {"retries": 2}))[0][0] == "function"
    time.sleep(0.3)
    assert not log.exists()


def test_run_any_task_lets_run_and_resume_start_every_task() -> None:
    with running_api(run_any_task=True) as api:
        api.scheduler.add_task(Task("from_file", function="sts_core.testing:noop", every=3600, enabled=False))
        assert api.client.post("/tasks/from_file/resume").status == 200
        assert api.client.post("/tasks/from_file/run").status == 202
        assert refused(api.client.call("PATCH", "/tasks/from_file", {"every": "2h"}))[0][0] == "function"


def test_an_allowed_task_is_run_and_resumed(api: RunningApi) -> None:
    api.client.post("/tasks", task_body("mine", every="1h", enabled=False))
    assert api.client.post("/tasks/mine/resume").json["state"] == "active"
    assert api.client.post("/tasks/mine/run").status == 202


def test_a_working_directory_must_be_listed_in_allowed_cwds(shell_api: RunningApi, tmp_path) -> None:
    (tmp_path / "Makefile").write_text("all:\n\ttouch pwned\n")
    body = {"name": "mk", "type": "shell", "command": "echo hi", "params": {"cwd": str(tmp_path)}}
    (problem,) = refused(shell_api.client.post("/tasks", body))
    assert problem == ("params.cwd", f"{str(tmp_path)!r} is not allowed through the API: the working directory changes "
                                     "what a command runs (a Makefile, ./script); it must be one of api.allowed_cwds "
                                     "(empty: no working directory may be set)")
    with running_api(allowed_task_types=["shell"], allowed_commands=["pwd"], allowed_cwds=[str(tmp_path)]) as api:
        listed = api.client.post("/tasks", {"name": "pwd", "type": "shell", "command": "pwd",
                                            "params": {"cwd": f"{tmp_path}/"}})
        assert listed.status == 201, listed.body
        (run,) = wait_for(lambda: api.runs("pwd", state="succeeded"))
        assert api.client.get(f"/runs/{run['id']}").json["output"] == f"{tmp_path}\n"
        other = api.client.post("/tasks", {"name": "up", "type": "shell", "command": "pwd",
                                           "params": {"cwd": f"{tmp_path}/.."}})
        assert refused(other)[0][0] == "params.cwd"


def test_a_command_list_is_matched_argument_by_argument() -> None:
    allowlist = Allowlist(task_types=["shell"], functions=[], commands=["find /data -name *", "echo *"])
    assert allowlist.command_allowed(["find", "/data", "-name", "x.log"])
    assert not allowlist.command_allowed(["find", "/data", "-name", "x", "-o", "-delete"])  # one * = one argument
    assert not allowlist.command_allowed(["find", "/data", "-name", "x -delete; id"])
    assert allowlist.command_allowed(["echo", "hello world"])
    assert not allowlist.command_allowed(["echo", "a\x00b"])
    # A command line is matched as a whole: there '*' also matches spaces, and so options.
    assert allowlist.command_allowed("find /data -name x -o -delete")


@pytest.mark.parametrize(
    ("pattern", "ref", "matches"),
    [
        ("myapp.jobs:*", "myapp.jobs:report", True),
        ("myapp.jobs:*", "myapp.jobs:Report.run", False),  # '*' stays within one segment
        ("myapp.jobs:*", "myapp.jobs.secret:report", False),
        ("myapp.*:build_*", "myapp.reports:build_pdf", True),
        ("myapp.*:build_*", "myapp.reports.daily:build_pdf", False),
        ("myapp.*:build_*", "myapp:build_pdf", False),
        ("myapp.**:*", "myapp:report", True),  # '**' is any number of segments, none included
        ("myapp.**:*", "myapp.reports.daily:report", True),
        ("myapp.**:*", "myappx:report", False),
        ("**:report", "any.module:report", True),
        ("myapp.jobs:*.*", "myapp.jobs:Report.run", True),
        ("myapp.jobs:**", "myapp.jobs:report.__call__", False),  # never a dunder attribute
        ("my*", "myapp.jobs:report", False),  # no ':' in the pattern: registered names only
        ("my*", "my_cleanup", True),
        ("myapp.jobs:report", "myapp.jobs:report", True),
        ("myapp.jobs:report", "myapp.jobs:reports", False),
        ("myapp.jobs:rep?rt", "myapp.jobs:report", True),
        ("myapp.jobs:[rs]*", "myapp.jobs:send", True),
    ],
)
def test_function_patterns(pattern: str, ref: str, matches: bool) -> None:
    assert FunctionPattern(pattern).matches(ref) is matches


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
