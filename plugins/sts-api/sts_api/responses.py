"""JSON responses and the ``ApiError`` that becomes one.

Every error body has the same shape: ``{"error": code, "message": text}``, plus ``problems``
(``[{"path", "message"}]``) when the input was invalid. Validation problems use the key paths of
task files, relative to the task (``cron``, ``kwargs.limit``), or ``query.<name>`` for query
parameters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.responses import Response

from sts.plugin import Problem

JSON = "application/json"
#: At most this many problems are listed in one answer (the message counts them all).
MAX_PROBLEMS = 50
#: Headers every response carries: nothing is cached, nothing is sniffed.
COMMON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(Exception):
    """A request that cannot be served: becomes a JSON error response with ``status``.

    ``refusal`` says why a request was refused on security grounds (the allowlist refused what
    it would run); such a refusal is logged at WARNING with the token's name. None: an ordinary
    error, not logged."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        problems: Iterable[Problem] = (),
        headers: Mapping[str, str] | None = None,
        refusal: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})
        self.refusal = refusal

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        data: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.problems:
            data["problems"] = [{"path": p.key_path, "message": p.message} for p in self.problems]
        return data

    def response(self) -> Response:
        """The error as a response."""
        return json_response(self.body(), self.status, self.headers)


def invalid(problems: Iterable[Problem], message: str = "the request is invalid", *, count: int = 0) -> ApiError:
    """A 422 listing ``problems``: at most ``MAX_PROBLEMS`` of them, and the message says how many
    there are when more (``count``, when the caller stopped looking early) were found."""
    problems = list(problems)
    total = max(count, len(problems))
    problems = problems[:MAX_PROBLEMS]
    if total > len(problems):
        message = f"{message}: {total} problems, the first {len(problems)} listed"
    elif len(problems) == 1:
        only = problems[0]
        message = f"{only.key_path}: {only.message}" if only.key_path else only.message
    return ApiError(422, "validation", message, problems=problems)


def not_found(what: str) -> ApiError:
    """A 404 saying what was not found."""
    return ApiError(404, "not_found", what)


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``data`` as JSON (values JSON cannot hold are shown as text, never an error)."""
    return Response(encode(data), status_code=status, media_type=JSON, headers={**COMMON_HEADERS, **(headers or {})})


def encode(data: Any) -> bytes:
    """Strict JSON in UTF-8: no NaN or Infinity (they become null), other objects become their
    ``repr``, text that is not valid Unicode is escaped."""
    try:
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=repr)
    except ValueError:
        data = _finite(data)
        text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=repr)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate (a task added in-process, say)
        return json.dumps(data, ensure_ascii=True, allow_nan=False, default=repr).encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
