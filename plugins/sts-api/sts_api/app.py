"""The Starlette application: routes, authentication per operation, and error responses.

Each operation is an ``Operation``: method, path, the scope it needs (None: public) and its
handler. The OpenAPI document (``sts_api.openapi``) describes exactly these operations, and a
test holds the two together. Every response is JSON; no error escapes as an HTML page or a
traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import attrs
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from sts.plugin import BackendError, BackendUnavailableError
from sts_api import openapi
from sts_api.allowlist import Allowlist
from sts_api.auth import ADMIN, READ, AuthError, TokenTable
from sts_api.bodies import read_json
from sts_api.config import Settings
from sts_api.hosts import HostCheck, host_check_needed
from sts_api.resources import health_resource, plugin_resource, run_resource, task_definition, task_resource
from sts_api.responses import COMMON_HEADERS, ApiError, json_response, not_found
from sts_api.runquery import RunQuery, find_runs
from sts_api.service import ANY_VERSION, TaskService, TaskView

log = logging.getLogger("sts.api")

#: How long the readiness check waits for the backend to answer (seconds).
READY_TIMEOUT = 2.0
_NO_VERSION = -1  # an If-Match value that names no version: matches none
#: The longest path, and the longest reason for a refusal, that a log line shows (characters).
MAX_LOGGED_PATH = 300
MAX_LOGGED_REASON = 500


@attrs.define
class Api:
    """What the handlers work with: the scheduler, the task service, the tokens and the limits."""

    scheduler: Any
    settings: Settings
    service: TaskService
    tokens: TokenTable


Handler = Callable[[Api, Request], Awaitable[Response]]


@attrs.frozen
class Operation:
    """One method on one path, the scope it needs (None: no token needed) and its handler."""

    method: str
    path: str
    scope: str | None
    handler: Handler


def build_app(scheduler: Any, settings: Settings) -> Starlette:
    """The ASGI application serving ``scheduler`` as ``settings`` say."""
    allowlist = Allowlist(task_types=settings.allowed_task_types, functions=settings.allowed_functions,
                          commands=settings.allowed_commands, cwds=settings.allowed_cwds)
    service = TaskService(scheduler, allowlist, run_any_task=settings.run_any_task)
    api = Api(scheduler, settings, service, TokenTable(settings.tokens))
    by_path: dict[str, dict[str, Operation]] = {}
    for operation in OPERATIONS:
        by_path.setdefault(operation.path, {})[operation.method] = operation
    routes = [Route(path, _Endpoint(api, operations)) for path, operations in by_path.items()]
    middleware = []
    if host_check_needed(settings.host, settings.allowed_hosts):  # outermost: before CORS, auth and routing
        middleware.append(Middleware(HostCheck, allowed=settings.allowed_hosts))
    if settings.cors_origins:
        middleware.append(Middleware(
            CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
            allow_methods=sorted({op.method for op in OPERATIONS}),
            allow_headers=["Authorization", "Content-Type", "If-Match"], expose_headers=["ETag", "Location"],
        ))
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: _http_error, Exception: _server_error})
    app.router.redirect_slashes = False
    return app


class _Endpoint:
    """The operations of one path: authenticates, calls the handler, turns errors into JSON.

    An ASGI app rather than a function, so that Starlette hands it every method and a method the
    path does not have is a JSON 405 whose ``Allow`` lists exactly the path's methods."""

    def __init__(self, api: Api, operations: dict[str, Operation]) -> None:
        self.api = api
        self.operations = operations
        self.allowed = ", ".join(sorted(operations))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.serve(request)
        await response(scope, receive, send)

    async def serve(self, request: Request) -> Response:
        """The response to ``request``."""
        api = self.api
        operation = self.operations.get(request.method)
        if operation is None:
            return json_response({"error": "method_not_allowed", "message": f"{request.method} is not allowed here; "
                                  f"allowed: {self.allowed}"}, 405, {"Allow": self.allowed})
        caller = None
        try:
            if operation.scope is not None:
                caller = api.tokens.require(request.headers.get("authorization"), operation.scope)
            response = await operation.handler(api, request)
            if caller is not None and operation.scope == ADMIN:  # an audit trail of changes, by token name
                log.info("%s %s -> %d (token %s)", request.method, _path(request), response.status_code,
                         caller.token_name)
            return response
        except AuthError as exc:
            _log_refusal(request, exc.status, exc.token_name, exc.message)
            headers = {"WWW-Authenticate": 'Bearer realm="sts"'} if exc.status == 401 else {}
            return json_response({"error": "unauthorized" if exc.status == 401 else "forbidden",
                                  "message": exc.message}, exc.status, headers)
        except ApiError as exc:
            if exc.refusal is not None:
                _log_refusal(request, exc.status, caller.token_name if caller else None, exc.refusal)
            return exc.response()
        except BackendUnavailableError as exc:
            return json_response({"error": "backend_unavailable", "message": str(exc)}, 503, {"Retry-After": "5"})
        except BackendError as exc:
            return json_response({"error": "backend_error", "message": str(exc)}, 503, {"Retry-After": "5"})
        except Exception as exc:  # noqa: BLE001 - a bug must still answer JSON, and be logged
            return await _server_error(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    message = "no such endpoint; GET /openapi.json lists them" if exc.status_code == 404 else str(exc.detail)
    return json_response({"error": code, "message": message}, exc.status_code, exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, _path(request), exc_info=exc)
    return json_response({"error": "internal", "message": f"internal error ({type(exc).__name__}); "
                                                          "the server log has the details"}, 500)


# --- helpers ----------------------------------------------------------------------------------------


def _log_refusal(request: Request, status: int, token_name: str | None, reason: str) -> None:
    """A refused request at WARNING, so that probing with a stolen token shows in the log: the
    method, the path, the status, the token's name (never the token) and why. The text log
    escapes the control characters a client may put in the path."""
    log.warning("%s %s -> %d refused (token %s): %s", request.method, _path(request), status,
                token_name or "none", _shortened(reason, MAX_LOGGED_REASON))


def _path(request: Request) -> str:
    """The request's path as decoded, at most ``MAX_LOGGED_PATH`` characters (for the log)."""
    return _shortened(str(request.scope.get("path", "")), MAX_LOGGED_PATH)


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _if_match(request: Request) -> int | None:
    """The version ``If-Match`` names: ``"3"``, ``W/"3"`` or ``3``; ``*`` is ``ANY_VERSION``; a value that
    names no version can match none (412)."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return ANY_VERSION
    text = text.removeprefix("W/").strip().strip('"')
    return int(text) if text.isascii() and text.isdigit() and 0 < len(text) < 10 else _NO_VERSION


async def _backend_failure(api: Api) -> Exception | None:
    """None when the backend's store answers within ``READY_TIMEOUT``; else what went wrong (a
    ``TimeoutError`` when it did not answer)."""
    try:
        await asyncio.wait_for(api.scheduler.check_backend(), READY_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 - any failure means "unavailable"
        return exc
    return None


def _authenticated(api: Api, request: Request) -> bool:
    """True when the request carries a valid token (of any scope)."""
    try:
        api.tokens.authenticate(request.headers.get("authorization"))
    except AuthError:
        return False
    return True


def _task_response(view: TaskView, status: int = 200, location: bool = False) -> Response:
    headers = {"ETag": f'"{view.task.version}"'}
    if location:
        headers["Location"] = f"/tasks/{quote(view.task.name)}"
    return json_response(task_resource(view.task, view.next_fire), status, headers)


def _name(request: Request) -> str:
    return str(request.path_params["name"])


# --- handlers ---------------------------------------------------------------------------------------


async def health(api: Api, request: Request) -> Response:
    """Liveness: the process serves requests."""
    return json_response({"status": "ok", "running": bool(api.scheduler.running)})


async def ready(api: Api, request: Request) -> Response:
    """Readiness: the scheduler runs and its backend answers within ``READY_TIMEOUT``. Why the
    backend failed (an address, say) is told only to a caller with a valid token."""
    checks = {"scheduler": "ok" if api.scheduler.running else "not running"}
    failure = await _backend_failure(api)
    if failure is None:
        checks["backend"] = "ok"
    elif isinstance(failure, TimeoutError):
        checks["backend"] = f"no answer within {READY_TIMEOUT:g}s"
    elif _authenticated(api, request):
        checks["backend"] = f"{type(failure).__name__}: {failure}"
    else:
        checks["backend"] = "unavailable (send a token for the details)"
    is_ready = all(value == "ok" for value in checks.values())
    return json_response({"ready": is_ready, "checks": checks}, 200 if is_ready else 503)


async def openapi_document(api: Api, request: Request) -> Response:
    """The OpenAPI document of this API."""
    return json_response(openapi.document())


async def status(api: Api, request: Request) -> Response:
    """The scheduler's health in detail. ``backend_unavailable`` asks the backend as ``/ready``
    does: the loops notice an outage only when they next use it, and ``sts api`` runs none."""
    backend = str(api.scheduler.config.get("scheduler_backend"))
    health = api.scheduler.health()
    unavailable = health.backend_unavailable or await _backend_failure(api) is not None
    return json_response(health_resource(health, backend, backend_unavailable=unavailable))


async def plugins(api: Api, request: Request) -> Response:
    """Every installed plugin."""
    manager = api.scheduler.plugins
    off = manager.switched_off(api.scheduler.config)
    return json_response({"plugins": [plugin_resource(info, off) for info in manager.plugin_infos()]})


async def list_tasks(api: Api, request: Request) -> Response:
    """Every task."""
    views = await api.service.list()
    return json_response({"tasks": [task_resource(view.task, view.next_fire) for view in views]})


async def create_task(api: Api, request: Request) -> Response:
    """Create a task."""
    data = await read_json(request, api.settings.max_body_bytes, api.settings.request_timeout)
    return _task_response(await api.service.create(data), 201, location=True)


async def get_task(api: Api, request: Request) -> Response:
    """One task."""
    return _task_response(await api.service.get(_name(request)))


async def replace_task(api: Api, request: Request) -> Response:
    """Replace a task's definition (or create it)."""
    data = await read_json(request, api.settings.max_body_bytes, api.settings.request_timeout)
    view, created = await api.service.replace(_name(request), data, _if_match(request))
    return _task_response(view, 201 if created else 200, location=created)


async def patch_task(api: Api, request: Request) -> Response:
    """Change some options of a task."""
    data = await read_json(request, api.settings.max_body_bytes, api.settings.request_timeout)
    return _task_response(await api.service.patch(_name(request), data, _if_match(request)))


async def delete_task(api: Api, request: Request) -> Response:
    """Remove a task."""
    await api.service.delete(_name(request), _if_match(request))
    return Response(status_code=204, headers=COMMON_HEADERS)


async def task_version(api: Api, request: Request) -> Response:
    """One stored version of a task."""
    task = await api.service.version(_name(request), int(request.path_params["version"]))
    return json_response(task_definition(task), headers={"ETag": f'"{task.version}"'})


async def pause_task(api: Api, request: Request) -> Response:
    """Pause a task."""
    return _task_response(await api.service.set_enabled(_name(request), False, _if_match(request)))


async def resume_task(api: Api, request: Request) -> Response:
    """Resume a task."""
    return _task_response(await api.service.set_enabled(_name(request), True, _if_match(request)))


async def run_task(api: Api, request: Request) -> Response:
    """Run a task now."""
    run = await api.service.run_now(_name(request))
    return json_response({"run": run_resource(run, full=False)}, 202, {"Location": f"/runs/{quote(run.id)}"})


async def list_runs(api: Api, request: Request) -> Response:
    """Runs, filtered and paginated."""
    params = {key: request.query_params.getlist(key) for key in request.query_params}
    query = RunQuery.parse(params)
    page = await find_runs(api.scheduler, query)
    return json_response({
        "runs": [run_resource(run, full=False) for run in page.runs],
        "limit": query.limit,
        "offset": query.offset,
        "next_offset": page.next_offset,
    })


async def get_run(api: Api, request: Request) -> Response:
    """One run with its error and output."""
    run_id = str(request.path_params["run_id"])
    run = await api.scheduler.get_run(run_id)
    if run is None:
        raise not_found(f"no run with id {run_id!r} (unknown, or dropped by history retention)")
    return json_response(run_resource(run))


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/health", None, health),
    Operation("GET", "/ready", None, ready),
    Operation("GET", "/openapi.json", READ, openapi_document),
    Operation("GET", "/status", READ, status),
    Operation("GET", "/plugins", READ, plugins),
    Operation("GET", "/tasks", READ, list_tasks),
    Operation("POST", "/tasks", ADMIN, create_task),
    Operation("GET", "/tasks/{name}", READ, get_task),
    Operation("PUT", "/tasks/{name}", ADMIN, replace_task),
    Operation("PATCH", "/tasks/{name}", ADMIN, patch_task),
    Operation("DELETE", "/tasks/{name}", ADMIN, delete_task),
    Operation("GET", "/tasks/{name}/versions/{version:int}", READ, task_version),
    Operation("POST", "/tasks/{name}/pause", ADMIN, pause_task),
    Operation("POST", "/tasks/{name}/resume", ADMIN, resume_task),
    Operation("POST", "/tasks/{name}/run", ADMIN, run_task),
    Operation("GET", "/runs", READ, list_runs),
    Operation("GET", "/runs/{run_id}", READ, get_run),
)
