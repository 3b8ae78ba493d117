"""The OpenAPI 3.1 document served at ``/openapi.json``.

Written by hand, next to the handlers, because the request bodies are checked by the kernel's
task validation rather than by a schema library. What keeps it accurate: the request schemas
declare only constraints the server enforces (so every body they forbid is refused), every
status a handler can return is listed with its body, ``tests/test_api_openapi.py`` matches the
document's operations against the routes, and a schemathesis run checks every response
against it.
"""

from __future__ import annotations

import copy
import functools
from importlib import metadata
from typing import Any

from sts.plugin import EXECUTORS, MISFIRE_POLICIES, RunState
from sts_api.limits import MAX_BACKOFF, MAX_DURATION, MAX_INSTANCES, MAX_RETRIES, MAX_YEAR, MIN_YEAR

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}$"

Schema = dict[str, Any]


def _nullable(schema: Schema) -> Schema:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_DURATION: Schema = {
    "description": "seconds, or text such as 30s, 5m, 1h30m, 250ms; at most ten years",
    "anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_DURATION}, {"type": "string"}],
}
_INTERVAL: Schema = {
    "description": "seconds greater than zero, or text such as 30s, 5m, 1h30m; at most ten years",
    "anyOf": [{"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION}, {"type": "string"}],
}
_NAMES: Schema = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_DATETIME_TEXT: Schema = {"type": "string", "description": "ISO 8601 date-time, e.g. 2026-12-01T09:30:00+01:00, "
                                                           f"in the years {MIN_YEAR} to {MAX_YEAR}"}

#: Task options as JSON: the keys and values of a task-file entry. ``nullable`` options take
#: their default (or the config's) when null.
_TASK_OPTIONS: dict[str, tuple[Schema, bool]] = {
    "name": ({"type": "string", "pattern": NAME_PATTERN}, False),
    "function": ({"type": "string", "minLength": 1,
                  "description": "import path 'package.module:function' or a registered name"}, True),
    "type": ({"type": "string", "minLength": 1, "description": "task type: python (default), shell, ..."}, False),
    "command": ({"anyOf": [{"type": "string", "pattern": r"\S"},
                           {"type": "array", "items": {"type": "string"}, "minItems": 1}]}, True),
    "args": ({"type": "array"}, True),
    "kwargs": ({"type": "object"}, True),
    "params": ({"type": "object"}, True),
    "every": (_INTERVAL, True),
    "cron": ({"type": "string"}, True),
    "at": (_DATETIME_TEXT, True),
    "delay": (_DURATION, True),
    "trigger": ({"type": "object", "required": ["kind"], "properties": {"kind": {"type": "string"}}}, True),
    "timezone": ({"type": "string", "description": "IANA time zone name"}, True),
    "start": (_DATETIME_TEXT, True),
    "end": (_DATETIME_TEXT, True),
    "jitter": (_DURATION, True),
    "retries": ({"type": "integer", "minimum": 0, "maximum": MAX_RETRIES}, True),
    "retry_delay": (_DURATION, True),
    "backoff": ({"type": "number", "minimum": 1, "maximum": MAX_BACKOFF}, True),
    "max_retry_delay": (_DURATION, True),
    "retry_jitter": (_DURATION, True),
    "timeout": (_DURATION, True),
    "executor": ({"type": "string", "enum": list(EXECUTORS)}, True),
    "parent_tasks": (_NAMES, True),
    "max_instances": ({"type": "integer", "minimum": 1, "maximum": MAX_INSTANCES}, False),
    "misfire": ({"type": "string", "enum": list(MISFIRE_POLICIES)}, True),
    "misfire_grace_time": (_DURATION, True),
    "enabled": ({"type": "boolean"}, False),
    "tags": (_NAMES, True),
    "description": ({"type": "string"}, True),
    "alerts": ({"type": "object"}, True),
    "version": ({"type": "integer", "minimum": 1,
                 "description": "read-only; in PUT and PATCH, the version the change is based on (as If-Match)"},
                False),
}


def _task_schema(*, all_nullable: bool, required: list[str]) -> Schema:
    properties = {
        key: _nullable(schema) if (nullable or all_nullable) else schema
        for key, (schema, nullable) in _TASK_OPTIONS.items()
    }
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


_RUN_PROPERTIES: dict[str, Schema] = {
    "id": {"type": "string"},
    "task_name": {"type": "string"},
    "task_version": {"type": "integer", "description": "the task version this run ran"},
    "scheduled_for": {"type": "string"},
    "attempt": {"type": "integer"},
    "state": {"type": "string", "enum": [state.value for state in RunState]},
    "reason": {"type": "string"},
    "fire_id": _nullable({"type": "string"}),
    "created_at": _nullable({"type": "string"}),
    "started_at": _nullable({"type": "string"}),
    "ended_at": _nullable({"type": "string"}),
    "duration": _nullable({"type": "number"}),
    "result": {"description": "what the function returned: the value when it is JSON data (up to 64 KiB), "
                              "else its repr as a string; null when it returned None"},
    "error_type": _nullable({"type": "string"}),
    "error_message": _nullable({"type": "string"}),
    "worker": _nullable({"type": "string"}),
    "retry_at": _nullable({"type": "string"}),
    "waits_for_instance": {
        "type": "boolean",
        "description": "a manual fire queued behind the task's active runs (max_instances): it starts once one ends",
    },
    "isolated": {
        "type": "boolean",
        "description": "run alone on its worker, as a worker was lost while an earlier attempt ran: a loss of this "
                       "attempt counts toward executor.max_redeliveries",
    },
}
_RUN_LONG: dict[str, Schema] = {"traceback": _nullable({"type": "string"}), "output": _nullable({"type": "string"})}

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "key path relative to the task, or query.<name>"},
                       "message": {"type": "string"}},
        "required": ["path", "message"],
        "additionalProperties": False,
    },
    "Error": {
        "type": "object",
        "properties": {"error": {"type": "string"}, "message": {"type": "string"},
                       "problems": {"type": "array", "items": _ref("Problem")}},
        "required": ["error", "message"],
        "additionalProperties": False,
    },
    "NewTask": _task_schema(all_nullable=False, required=["name"]),
    "TaskDefinition": _task_schema(all_nullable=False, required=[]),
    "TaskPatch": _task_schema(all_nullable=True, required=[]),
    "StoredTask": {**_task_schema(all_nullable=False, required=["name", "version"])},
    "Task": {
        "type": "object",
        "properties": {
            "task": _ref("StoredTask"),
            "state": {"type": "string", "enum": ["active", "paused"]},
            "next_fire": _nullable({"type": "string"}),
        },
        "required": ["task", "state", "next_fire"],
        "additionalProperties": False,
    },
    "TaskList": {
        "type": "object",
        "properties": {"tasks": {"type": "array", "items": _ref("Task")}},
        "required": ["tasks"],
        "additionalProperties": False,
    },
    "RunSummary": {
        "type": "object", "properties": _RUN_PROPERTIES, "required": list(_RUN_PROPERTIES),
        "additionalProperties": False,
    },
    "Run": {
        "type": "object", "properties": {**_RUN_PROPERTIES, **_RUN_LONG},
        "required": [*_RUN_PROPERTIES, *_RUN_LONG], "additionalProperties": False,
    },
    "RunStarted": {
        "type": "object", "properties": {"run": _ref("RunSummary")}, "required": ["run"],
        "additionalProperties": False,
    },
    "RunPage": {
        "type": "object",
        "properties": {
            "runs": {"type": "array", "items": _ref("RunSummary")},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": _nullable({"type": "integer"}),
        },
        "required": ["runs", "limit", "offset", "next_offset"],
        "additionalProperties": False,
    },
    "Plugin": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "distribution": _nullable({"type": "string"}),
            "version": _nullable({"type": "string"}),
            "status": {"type": "string", "enum": ["enabled", "disabled", "failed"]},
            "error": _nullable({"type": "string"}),
            "off_in_config": {"type": "boolean"},
            "provides": {"type": "array", "items": {"type": "string"}},
            "hooks": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["name", "distribution", "version", "status", "error", "off_in_config", "provides", "hooks"],
        "additionalProperties": False,
    },
    "PluginList": {
        "type": "object",
        "properties": {"plugins": {"type": "array", "items": _ref("Plugin")}},
        "required": ["plugins"],
        "additionalProperties": False,
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "running": {"type": "boolean"}},
        "required": ["status", "running"],
        "additionalProperties": False,
    },
    "Ready": {
        "type": "object",
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["ready", "checks"],
        "additionalProperties": False,
    },
    "Status": {
        "type": "object",
        "properties": {
            "running": {"type": "boolean"},
            "scheduler_id": {"type": "string"},
            "roles": {"type": "array", "items": {"type": "string", "enum": ["scheduler", "worker"]}},
            "backend": {"type": "string"},
            "backend_unavailable": {"type": "boolean", "description": (
                "True when the backend does not answer now (asked as GET /ready asks it), or when this "
                "process's loops have not reached it again since they last failed to.")},
            "runs_in_flight": {"type": "integer"},
            "abandoned_threads": {"type": "integer", "minimum": 0},
            "waiting_for_thread": {"type": "integer", "minimum": 0},
            "beats": {"type": "object", "additionalProperties": _nullable({"type": "string"})},
            "task_problems": {
                "type": "object",
                "description": "Stored tasks this process cannot fire or run, with the reason; they stay "
                               "scheduled and their runs are recorded failed.",
                "additionalProperties": {"type": "string"},
            },
        },
        "required": ["running", "scheduler_id", "roles", "backend", "backend_unavailable", "runs_in_flight",
                     "abandoned_threads", "waiting_for_thread", "beats", "task_problems"],
        "additionalProperties": False,
    },
}

_ERRORS: dict[int, str] = {
    400: "The body is not JSON (malformed, empty, not UTF-8, NaN, nested too deeply).",
    401: "No bearer token, or an unknown one.",
    403: "The token's scope does not allow this operation (it needs admin).",
    404: "No such task, version or run.",
    408: "The body did not arrive within api.request_timeout; the connection is closed.",
    409: "Conflict: see the message.",
    412: "If-Match (or the body's version) names another version than the stored one: nothing changed.",
    413: "The body is larger than api.max_body_bytes.",
    415: "The body is not sent as application/json (or application/merge-patch+json).",
    421: "The Host header names a host this API does not answer for (api.allowed_hosts; on loopback: "
         "localhost and loopback addresses only).",
    422: "Invalid input: each problem names its key path. Nothing was changed.",
    503: "The backend (e.g. Redis) cannot be reached; retry later.",
}
#: Operations that start what a task runs: their 403 also means the allowlist refuses the task.
_STARTS = ("resumeTask", "runTask")
_NOT_ALLOWED = ("The token's scope does not allow this operation (it needs admin), or (error not_allowed) the "
                "allowlist refuses the stored task: the API runs and resumes only tasks it could create "
                "(api.allowed_task_types, api.allowed_functions, api.allowed_commands, api.allowed_cwds) unless "
                "api.run_any_task is true. Nothing was changed.")
_ETAG = {"ETag": {"description": "the task's version, quoted", "schema": {"type": "string"}}}
_LOCATION = {"Location": {"description": "where the new resource is", "schema": {"type": "string"}}}
_IF_MATCH = {
    "name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "change only if the task is at this version (its ETag, e.g. \"3\"); * = if it exists",
}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "task name",
         "example": "hello"}
#: Example bodies (the README's): ``sts_api.demo:hello`` ships with the plugin.
NEW_TASK_EXAMPLE = {"name": "hello", "function": "sts_api.demo:hello", "kwargs": {"name": "API"}, "every": "10s"}
_REPLACE_EXAMPLE = {"function": "sts_api.demo:hello", "every": "1m", "retries": 2}
_PATCH_EXAMPLE = {"every": "30s", "description": "greets every half minute"}
#: Where a created task leads (OpenAPI links: what a client, or schemathesis, can call next).
_TASK_LINKS = {
    link: {"operationId": operation_id, "parameters": {"name": "$response.body#/task/name"}}
    for link, operation_id in (("GetTask", "getTask"), ("ReplaceTask", "replaceTask"), ("PatchTask", "patchTask"),
                               ("DeleteTask", "deleteTask"), ("PauseTask", "pauseTask"),
                               ("ResumeTask", "resumeTask"), ("RunTask", "runTask"))
}
_TASK_LINKS["GetTaskVersion"] = {"operationId": "getTaskVersion", "parameters": {
    "name": "$response.body#/task/name", "version": "$response.body#/task/version"}}
_RUN_LINKS = {"GetRun": {"operationId": "getRun", "parameters": {"run_id": "$response.body#/run/id"}}}
_JSON_BODY_ERRORS = (400, 408, 413, 415, 422)


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _ok(description: str, schema: str | None, headers: dict[str, Any] | None = None,
        links: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema is not None:
        response["content"] = _json(_ref(schema))
    if headers:
        response["headers"] = headers
    if links:
        response["links"] = links
    return response


def _operation(
    operation_id: str,
    summary: str,
    responses: dict[int, dict[str, Any]],
    errors: tuple[int, ...],
    *,
    scope: str | None,
    parameters: list[dict[str, Any]] | None = None,
    body: tuple[str, tuple[str, ...], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    all_errors = set(errors) | {421}
    if scope is not None:
        all_errors |= {401, 503}
    if scope == "admin":
        all_errors.add(403)
    if body is not None:
        all_errors |= set(_JSON_BODY_ERRORS)
    merged = {**{str(code): value for code, value in responses.items()},
              **{str(code): {"description": _NOT_ALLOWED if code == 403 and operation_id in _STARTS else _ERRORS[code],
                             "content": _json(_ref("Error"))}
                 for code in sorted(all_errors)}}
    item: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": merged,
        "security": [] if scope is None else [{"bearer": []}],
    }
    if scope is not None:
        item["description"] = f"Needs a token with the {scope} scope."
        item["x-sts-scope"] = scope
    if parameters:
        item["parameters"] = parameters
    if body is not None:
        schema, media_types, example = body
        item["requestBody"] = {"required": True, "content": {media: {"schema": _ref(schema), "example": example}
                                                             for media in media_types}}
    return item


_RUN_FILTERS = [
    {"name": "task", "in": "query", "required": False, "schema": {"type": "string"}, "description": "task name"},
    {"name": "state", "in": "query", "required": False, "style": "form", "explode": True,
     "schema": {"type": "array", "items": {"type": "string", "enum": [s.value for s in RunState]}},
     "description": "run states (repeat the parameter for several)"},
    {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "ISO 8601 date-time: runs scheduled at or after it"},
    {"name": "until", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "ISO 8601 date-time: runs scheduled before it"},
    {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
     "description": "page size (default 50)"},
    {"name": "offset", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": 100000}, "description": "runs to skip"},
]


def _paths() -> dict[str, dict[str, Any]]:
    task_ok = _ok("The task.", "Task", _ETAG, _TASK_LINKS)
    json_types = ("application/json",)
    patch_types = ("application/merge-patch+json", "application/json")
    return {
        "/health": {"get": _operation("health", "Liveness: the API process serves requests",
                                      {200: _ok("Alive.", "Health")}, (), scope=None)},
        "/ready": {"get": _operation("ready", "Readiness: the scheduler runs and its backend answers",
                                     {200: _ok("Ready.", "Ready"), 503: _ok("Not ready; checks say why.", "Ready")},
                                     (), scope=None)},
        "/openapi.json": {"get": _operation("openapi", "This document",
                                            {200: {"description": "The OpenAPI document.",
                                                   "content": _json({"type": "object"})}}, (), scope="read")},
        "/status": {"get": _operation("status", "The scheduler's health in detail: roles, loops, runs in flight",
                                      {200: _ok("Status.", "Status")}, (), scope="read")},
        "/plugins": {"get": _operation("listPlugins", "Installed plugins", {200: _ok("Plugins.", "PluginList")},
                                       (), scope="read")},
        "/tasks": {
            "get": _operation("listTasks", "Every task", {200: _ok("Tasks, by name.", "TaskList")}, (), scope="read"),
            "post": _operation("createTask", "Create a task (task-file options, validated the same way)",
                               {201: _ok("Created (version 1).", "Task", {**_ETAG, **_LOCATION}, _TASK_LINKS)},
                               (409,), scope="admin", body=("NewTask", json_types, NEW_TASK_EXAMPLE)),
        },
        "/tasks/{name}": {
            "parameters": [_NAME],
            "get": _operation("getTask", "One task", {200: task_ok}, (404,), scope="read"),
            "put": _operation("replaceTask", "Replace a task's definition as a new version (or create it)",
                              {200: _ok("Replaced (a new version, or unchanged).", "Task", _ETAG, _TASK_LINKS),
                               201: _ok("Created.", "Task", {**_ETAG, **_LOCATION}, _TASK_LINKS)},
                              (412,), scope="admin", parameters=[_IF_MATCH],
                              body=("TaskDefinition", json_types, _REPLACE_EXAMPLE)),
            "patch": _operation("patchTask", "Change some options (JSON merge patch; null resets an option)",
                                {200: task_ok}, (404, 409, 412), scope="admin", parameters=[_IF_MATCH],
                                body=("TaskPatch", patch_types, _PATCH_EXAMPLE)),
            "delete": _operation("deleteTask", "Remove a task (its runs stay)",
                                 {204: {"description": "Removed."}}, (404, 409, 412), scope="admin",
                                 parameters=[_IF_MATCH]),
        },
        "/tasks/{name}/versions/{version}": {
            "parameters": [_NAME, {"name": "version", "in": "path", "required": True,
                                   "schema": {"type": "integer", "minimum": 0}}],
            "get": _operation("getTaskVersion", "One stored version of a task (the one a run ran, say)",
                              {200: _ok("The definition.", "StoredTask", _ETAG)}, (404,), scope="read"),
        },
        "/tasks/{name}/pause": {
            "parameters": [_NAME],
            "post": _operation("pauseTask", "Stop firing the task (a new version with enabled: false)",
                               {200: task_ok}, (404, 412), scope="admin", parameters=[_IF_MATCH]),
        },
        "/tasks/{name}/resume": {
            "parameters": [_NAME],
            "post": _operation("resumeTask", "Fire the task again (a new version with enabled: true)",
                               {200: task_ok}, (404, 412), scope="admin", parameters=[_IF_MATCH]),
        },
        "/tasks/{name}/run": {
            "parameters": [_NAME],
            "post": _operation("runTask", "Run the task now (the run goes to the workers)",
                               {202: _ok("Queued.", "RunStarted", _LOCATION, _RUN_LINKS)}, (404,),
                               scope="admin"),
        },
        "/runs": {"get": _operation("listRuns", "Runs, newest first, filtered and paginated",
                                    {200: _ok("A page of runs.", "RunPage")}, (422,), scope="read",
                                    parameters=_RUN_FILTERS)},
        "/runs/{run_id}": {
            "parameters": [{"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": _operation("getRun", "One run with its error, traceback and output",
                              {200: _ok("The run.", "Run")}, (404,), scope="read"),
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    try:
        version = metadata.version("sts-api")
    except metadata.PackageNotFoundError:
        version = "0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "STS REST API",
            "version": version,
            "description": "Create, change, pause, run and monitor STS tasks. Every endpoint except /health and "
                           "/ready needs 'Authorization: Bearer <token>'; read tokens may GET, admin tokens may "
                           "do everything. Task bodies are task-file entries, validated the same way.",
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy)."""
    return copy.deepcopy(_document())
