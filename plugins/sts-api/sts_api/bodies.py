"""Reading a request's JSON body within ``api.max_body_bytes``.

A body larger than the limit is refused with 413 as soon as its ``Content-Length`` says so, or
as soon as that many bytes have arrived, so a client cannot make the server buffer more.
Malformed JSON, ``NaN``/``Infinity``, unpaired surrogate escapes and nesting deeper than task data
needs are 400; a media
type other than JSON is 415.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from sts_api.responses import ApiError

#: Media types a body may be sent as: JSON, and JSON merge patch (RFC 7396) for PATCH.
JSON_TYPES = ("application/json", "application/merge-patch+json")
MAX_DEPTH = 32


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; raises ``ApiError`` 400, 413 or 415."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type and media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"expected a JSON body (Content-Type: application/json), got {media_type!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client closed the connection before the body was sent") from None
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the request needs a JSON body")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json",
                       f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body cannot be read as JSON: {exc}") from None
    if _depth(data) > MAX_DEPTH:
        raise ApiError(400, "malformed_json", f"the body is nested more than {MAX_DEPTH} levels deep")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "malformed_json", "the body holds an unpaired surrogate escape (such as \\ud800), "
                                              "which is not text") from None
    return data


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"the body is larger than {limit} bytes (api.max_body_bytes)")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: a deep body cannot exhaust the stack here)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest
