"""Reading a request's JSON body within ``api.max_body_bytes`` and ``api.request_timeout``.

* The body must be sent as ``application/json`` or ``application/merge-patch+json`` (parameters
  such as ``charset=utf-8`` aside); any other ``Content-Type``, or none, is 415.
* A body larger than the limit is refused with 413 as soon as its ``Content-Length`` says so, or
  as soon as that many bytes have arrived, so a client cannot make the server buffer more.
* A body that has not arrived within ``request_timeout`` is 408 (and the connection is closed),
  so a client trickling bytes cannot hold a request open for ever.
* Malformed JSON, ``NaN``/``Infinity``, unpaired surrogate escapes and nesting deeper than task
  data needs are 400.
* A number too large for a float (``1e400`` reads as infinity) is 422, naming its key path; so is an
  integer of more than 4,300 digits, which Python cannot read from text.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from starlette.requests import ClientDisconnect, Request

from sts.plugin import Problem
from sts_api.responses import MAX_PROBLEMS, ApiError, invalid

#: Media types a body may be sent as: JSON, and JSON merge patch (RFC 7396).
JSON_TYPES = ("application/json", "application/merge-patch+json")
MAX_DEPTH = 32
#: Python's limit on reading an integer from text (``sys.get_int_max_str_digits``).
MAX_INT_DIGITS = 4300
#: The default of ``api.request_timeout``: seconds a request's head, and then its body, may take to arrive.
REQUEST_TIMEOUT = 10.0


async def read_json(request: Request, limit: int, timeout: float = REQUEST_TIMEOUT) -> Any:
    """The parsed JSON body; raises ``ApiError`` 400, 408, 413, 415 or 422."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES:
        got = f"got {media_type[:100]!r}" if media_type else "got no Content-Type"
        raise ApiError(415, "unsupported_media_type",
                       f"expected a JSON body sent as Content-Type: application/json (or application/merge-patch+json "
                       f"for PATCH), {got}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    raw = await _read(request, limit, timeout)
    if not raw.strip():
        raise ApiError(400, "malformed_json", "the request needs a JSON body")
    overflowed = []

    def parse_float(text: str) -> float:
        number = float(text)
        if not math.isfinite(number):
            overflowed.append(text)
        return number

    def parse_int(text: str) -> int | float:
        if len(text.lstrip("-")) > MAX_INT_DIGITS:  # int() would raise: reported below like a float too large
            overflowed.append(text)
            return -math.inf if text.startswith("-") else math.inf
        return int(text)

    try:
        text = raw.decode("utf-8")
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=parse_float, parse_int=parse_int)
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
    if overflowed:
        raise invalid(non_finite_problems(data), count=len(overflowed))
    return data


async def _read(request: Request, limit: int, timeout: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "incomplete_body", "the client closed the connection before the body was sent") from None
    except TimeoutError:
        raise ApiError(408, "timeout", f"the body did not arrive within {timeout:g}s (api.request_timeout)",
                       headers={"Connection": "close"}) from None
    return b"".join(chunks)


def non_finite_problems(data: Any) -> list[Problem]:
    """A problem for each number in ``data`` that is not finite (at most ``MAX_PROBLEMS``), by key
    path: ``kwargs.limit``, ``args[0]``."""
    problems = []
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack and len(problems) < MAX_PROBLEMS:
        item, path = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            problems.append(Problem(path, "expected a finite number: this one is too large for a 64-bit float "
                                          "(it reads as infinity)"))
        elif isinstance(item, dict):
            prefix = f"{path}." if path else ""
            stack.extend((value, prefix + str(key)[:200]) for key, value in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((value, f"{path}[{index}]") for index, value in reversed(list(enumerate(item))))
    return problems


def too_large(limit: int) -> ApiError:
    """The 413 for a body over ``limit`` bytes."""
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
