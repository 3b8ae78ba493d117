"""Authentication: every operation but the health checks needs a bearer token; read tokens may
read, admin tokens may do everything; 401 and 403 answer JSON. The matrix is built from the
served OpenAPI document, so a new endpoint cannot escape it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sts_api_helpers import ADMIN, READ, RunningApi, api_config, running_api, task_body, wait_for

from sts_api import auth
from sts_api.auth import AuthError, TokenTable
from sts_api.config import Token

PUBLIC = {("GET", "/health"), ("GET", "/ready")}
CREDENTIALS = {
    "none": None,
    "not bearer": "Basic YWRtaW46YWRtaW4=",
    "unknown token": "Bearer this-is-not-a-configured-token",
    "read": f"Bearer {READ}",
    "admin": f"Bearer {ADMIN}",
}
_names = itertools.count()


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningApi]:
    with running_api() as running:
        yield running


def operations(api: RunningApi) -> list[tuple[str, str, str | None]]:
    """``(method, path template, scope)`` of every operation in the served document."""
    document = api.client.get("/openapi.json").json
    return [(method.upper(), path, item.get("x-sts-scope"))
            for path, methods in document["paths"].items()
            for method, item in methods.items() if method != "parameters"]


def call(api: RunningApi, method: str, template: str, authorization: str | None) -> int:
    """Call one operation on a task made for it, with ``authorization`` as the header."""
    name = f"auth{next(_names)}"
    assert api.client.post("/tasks", task_body(name, every="1h")).status == 201
    run_id = api.client.post(f"/tasks/{name}/run").json["run"]["id"]
    wait_for(lambda: api.client.get(f"/runs/{run_id}").status == 200)
    path = template.replace("{name}", name).replace("{version}", "1").replace("{run_id}", run_id)
    bodies: dict[str, Any] = {"POST /tasks": task_body(f"{name}new", every="1h"),
                              "PUT /tasks/{name}": task_body(name, every="2h"),
                              "PATCH /tasks/{name}": {"every": "3h"}}
    body = bodies.get(f"{method} {template}")
    headers = {"Authorization": authorization} if authorization else {}
    return api.client.call(method, path, body, token=None, headers=headers).status


def expected(method: str, path: str, scope: str | None, credential: str) -> str:
    if (method, path) in PUBLIC:
        return "ok"
    if credential in ("none", "not bearer", "unknown token"):
        return "401"
    if scope == "admin" and credential == "read":
        return "403"
    return "ok"


@pytest.mark.parametrize("credential", list(CREDENTIALS))
def test_auth_matrix(shared: RunningApi, credential: str) -> None:
    found, wanted = {}, {}
    for method, path, scope in operations(shared):
        status = call(shared, method, path, CREDENTIALS[credential])
        found[f"{method} {path}"] = "ok" if 200 <= status < 300 else str(status)
        wanted[f"{method} {path}"] = expected(method, path, scope, credential)
    assert found == wanted
    assert len(found) == 17


def test_401_and_403_answer_json_and_say_what_is_needed(shared: RunningApi) -> None:
    missing = shared.client.get("/tasks", token=None)
    assert missing.status == 401 and missing.headers["www-authenticate"] == 'Bearer realm="sts"'
    assert missing.json == {"error": "unauthorized",
                            "message": "missing bearer token: send the header 'Authorization: Bearer <token>'"}
    wrong = shared.client.get("/tasks", token="nope-nope-nope-nope")
    assert wrong.status == 401 and wrong.json == {"error": "unauthorized", "message": "invalid bearer token"}
    forbidden = shared.client.post("/tasks", task_body("x"), token=READ)
    assert forbidden.status == 403 and "www-authenticate" not in forbidden.headers
    assert forbidden.json == {"error": "forbidden",
                              "message": "this operation needs a token with the admin scope; this token has read"}
    assert shared.client.get("/tasks/x").status == 404  # nothing was created


def test_the_scheme_is_case_insensitive_and_the_token_is_not(shared: RunningApi) -> None:
    assert shared.client.get("/tasks", token=None, headers={"Authorization": f"bearer {READ}"}).status == 200
    assert shared.client.get("/tasks", token=READ.upper()).status == 401


def test_a_tokens_list_grants_each_token_its_scope() -> None:
    extra = [{"token": "ci-deployer-token-0123456789", "scope": "admin", "name": "ci"},
             {"token": "dashboard-token-0123456789", "scope": "read"}]
    with running_api(admin_token="", read_token="", tokens=extra) as api:
        assert api.client.post("/tasks", task_body("a", every="1h"), token="ci-deployer-token-0123456789").status == 201
        assert api.client.get("/tasks/a", token="dashboard-token-0123456789").status == 200
        assert api.client.post("/tasks/a/pause", token="dashboard-token-0123456789").status == 403
        assert api.client.get("/tasks", token=ADMIN).status == 401  # not configured here


def test_tokens_never_reach_the_log(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    config = api_config()
    config.set("logging.loglevel", "DEBUG")
    with running_api(config) as api:
        api.client.post("/tasks", task_body("logged", every="1h"))
        api.client.get("/tasks", token="wrong-token-that-is-long-enough")
        api.client.post("/tasks", task_body("x"), token=READ)
        api.client.post("/tasks/logged/run")
    out, err = capfd.readouterr()
    text = caplog.text + out + err
    assert "REST API at http://127.0.0.1:" in text and "2 token(s)" in text
    assert "POST /tasks/logged/run -> 202 (token admin_token)" in text  # changes are logged by token name
    for secret in (ADMIN, READ, "wrong-token-that-is-long-enough"):
        assert secret not in text


def test_every_configured_token_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    table = TokenTable([Token("a", "admin", "first-token-0123456789"), Token("b", "read", "second-token-0123456789"),
                        Token("c", "read", "third-token-0123456789")])
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda x, y: calls.append(1) or real(x, y))
    assert table.authenticate("Bearer first-token-0123456789").token_name == "a"
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(AuthError) as caught:
        table.authenticate("Bearer unknown")
    assert caught.value.status == 401 and len(calls) == 3


def test_admin_includes_read_and_read_excludes_admin() -> None:
    table = TokenTable([Token("a", "admin", "admin-token-0123456789"), Token("r", "read", "read-token-0123456789")])
    assert table.require("Bearer admin-token-0123456789", "read").scope == "admin"
    with pytest.raises(AuthError) as caught:
        table.require("Bearer read-token-0123456789", "admin")
    assert caught.value.status == 403
