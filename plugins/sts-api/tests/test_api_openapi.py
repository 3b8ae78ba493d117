"""The OpenAPI document describes exactly the served operations, with every status they return."""

from __future__ import annotations

import re
from pathlib import Path

from sts_api_helpers import READ, RunningApi, running_api

from sts_api import openapi
from sts_api.app import OPERATIONS


def documented(document: dict) -> dict[tuple[str, str], dict]:
    return {(method.upper(), path): item for path, methods in document["paths"].items()
            for method, item in methods.items() if method != "parameters"}


def test_the_document_lists_exactly_the_served_operations_with_their_scopes() -> None:
    served = {(op.method, re.sub(r"\{(\w+):\w+\}", r"{\1}", op.path)): op.scope for op in OPERATIONS}
    found = {key: item.get("x-sts-scope") for key, item in documented(openapi.document()).items()}
    assert found == served


def test_every_operation_documents_the_errors_it_can_return() -> None:
    for (method, path), item in documented(openapi.document()).items():
        codes = set(item["responses"])
        scope = item.get("x-sts-scope")
        assert "421" in codes, (method, path)  # a Host that is not allowed, before anything else
        if path in ("/tasks/{name}/run", "/tasks/{name}/resume"):
            assert "api.run_any_task" in item["responses"]["403"]["description"]
        if scope is None:
            assert item["security"] == [] and "401" not in codes
            continue
        assert item["security"] == [{"bearer": []}] and {"401", "503"} <= codes, (method, path)
        assert ("403" in codes) == (scope == "admin"), (method, path)
        if "requestBody" in item:
            assert {"400", "408", "413", "415", "422"} <= codes, (method, path)
        if "{name}" in path and method != "PUT" and path != "/tasks/{name}/versions/{version}":
            assert "404" in codes, (method, path)


def test_every_reference_resolves() -> None:
    document = openapi.document()
    text = str(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name


def test_the_served_document_needs_a_read_token_and_is_the_same(api: RunningApi) -> None:
    assert api.client.get("/openapi.json", token=None).status == 401
    served = api.client.get("/openapi.json", token=READ)
    assert served.status == 200 and served.json == openapi.document()
    assert served.json["openapi"] == "3.1.0" and served.json["info"]["title"] == "STS REST API"


def test_the_documented_example_creates_a_task() -> None:
    with running_api(allowed_functions=["sts_api.demo:*"]) as api:
        example = openapi.document()["paths"]["/tasks"]["post"]["requestBody"]["content"]["application/json"]
        reply = api.client.post("/tasks", example["example"])
        assert reply.status == 201, reply.body
        assert reply.json["task"]["function"] == "sts_api.demo:hello"


def test_the_readme_documents_every_operation_with_an_example() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    sections = re.split(r"^### ", readme, flags=re.MULTILINE)[1:]
    for method, path in documented(openapi.document()):
        assert f"| `{method} {path}` |" in readme, f"{method} {path} is missing from the endpoint table"
        last = path.rsplit("/", 1)[-1]
        section = next((s for s in sections if f"`{method} {path}`" in s.splitlines()[0]
                        or (method == "POST" and f"`/{last}`" in s.splitlines()[0])), None)
        assert section is not None, f"no section for {method} {path}"
        assert "curl " in section, f"no example for {method} {path}"
