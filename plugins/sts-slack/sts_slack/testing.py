"""Test helpers: ``FakeSlack``, a local HTTP server standing in for Slack's incoming webhooks,
and ``check_payload``, the payload contract it enforces.

``FakeSlack`` listens on 127.0.0.1 (a free port), checks every request (POST, JSON content
type, a payload that Slack would accept: see ``check_payload``), records it, and answers as
told: ``ok`` (200 "ok"), ``(429, seconds)`` (rate limited with ``Retry-After``), ``500``, or
``hang`` (answers only after ``hang_seconds``, longer than any client timeout a test uses).
A request that breaks the contract is answered 400 and listed in ``violations``.

``check_payload`` is written from Slack's documented limits on purpose, independently of
``sts_slack.blockkit``, so the two check each other.
"""

from __future__ import annotations

import collections
import json
import re
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

_BLOCK_TYPES = {"header", "section", "context", "divider", "actions"}
_TEXT_TYPES = {"plain_text", "mrkdwn"}
_LINK = re.compile(r"<(?:https?://|mailto:|[#@!])[^<>|\s]*(?:\|[^<>]*)?>")
_ENTITY = re.compile(r"&(?!(?:amp|lt|gt);)")


def _length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _text_object(obj: Any, where: str, limit: int, types: set[str] = _TEXT_TYPES) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in types:
        return [f"{where}: expected a text object of type {' or '.join(sorted(types))}, got {obj!r:.80}"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}.text: expected non-empty text"]
    problems = []
    if _length(text) > limit:
        problems.append(f"{where}.text: {_length(text)} characters, more than {limit}")
    if obj["type"] == "mrkdwn":
        problems.extend(_escaping(text, f"{where}.text"))
    return problems


def _escaping(text: str, where: str) -> list[str]:
    bare = _LINK.sub("", text)
    if "<" in bare or ">" in bare:
        return [f"{where}: unescaped < or > in mrkdwn: {text!r:.120}"]
    if _ENTITY.search(bare):
        return [f"{where}: unescaped & in mrkdwn: {text!r:.120}"]
    return []


def _block(block: Any, where: str) -> list[str]:
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        return [f"{where}: expected a block of type {', '.join(sorted(_BLOCK_TYPES))}, got {block!r:.80}"]
    kind = block["type"]
    if kind == "header":
        return _text_object(block.get("text"), f"{where}.text", 150, {"plain_text"})
    if kind == "section":
        problems = []
        if "text" not in block and "fields" not in block:
            return [f"{where}: a section needs text or fields"]
        if "text" in block:
            problems += _text_object(block["text"], f"{where}.text", 3000)
        if "fields" in block:
            items = block["fields"]
            if not isinstance(items, list) or not 1 <= len(items) <= 10:
                return [*problems, f"{where}.fields: expected 1 to 10 fields"]
            for index, item in enumerate(items):
                problems += _text_object(item, f"{where}.fields[{index}]", 2000)
        return problems
    if kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            return [f"{where}.elements: expected 1 to 10 elements"]
        return [p for i, e in enumerate(elements) for p in _text_object(e, f"{where}.elements[{i}]", 3000)]
    if kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            return [f"{where}.elements: expected 1 to 25 elements"]
        return [p for i, e in enumerate(elements) for p in _button(e, f"{where}.elements[{i}]")]
    extra = set(block) - {"type", "block_id"}
    return [f"{where}: a divider has no {sorted(extra)}"] if extra else []


def _button(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict) or element.get("type") != "button":
        return [f"{where}: expected a button"]
    problems = _text_object(element.get("text"), f"{where}.text", 75, {"plain_text"})
    url = element.get("url")
    if not isinstance(url, str) or not re.match(r"^https?://", url) or len(url) > 3000:
        problems.append(f"{where}.url: expected an http(s) URL of at most 3000 characters, got {url!r:.80}")
    return problems


def check_payload(payload: Any) -> list[str]:
    """What Slack would refuse in an incoming-webhook payload with blocks (empty: acceptable)."""
    if not isinstance(payload, dict):
        return ["the body is not a JSON object"]
    problems = []
    text = payload.get("text")
    if not isinstance(text, str) or not text.strip():
        problems.append("text: expected a non-empty fallback text")
    else:
        problems += _escaping(text, "text")
        if _length(text) > 40000:
            problems.append("text: longer than 40000 characters")
    blocks = payload.get("blocks")
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return [*problems, "blocks: expected a list of 1 to 50 blocks"]
    for index, block in enumerate(blocks):
        problems += _block(block, f"blocks[{index}]")
    return problems


@attrs.frozen
class Request:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    payload: Any


class FakeSlack:
    """A local stand-in for Slack's webhook endpoint. Use as a context manager, or call
    ``start`` and ``close``."""

    def __init__(self, *, hang_seconds: float = 10.0) -> None:
        self.hang_seconds = hang_seconds
        self.requests: list[Request] = []
        self.violations: list[str] = []
        self._answers: collections.deque[Any] = collections.deque()
        self._default: Any = "ok"
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack", daemon=True)

    # -- control ---------------------------------------------------------------------------------------

    def url(self, name: str = "default") -> str:
        """A webhook URL on this server; its path holds a secret-looking token per ``name``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/services/T0STS/B0{name.upper()}/secret-token-{name}"

    def answer(self, *answers: Any, then: Any = None) -> None:
        """Answer the next requests with ``answers`` in order, then with ``then`` (if given)."""
        with self._changed:
            self._answers.extend(answers)
            if then is not None:
                self._default = then

    @property
    def payloads(self) -> list[Any]:
        """The payloads received, in order."""
        with self._changed:
            return [request.payload for request in self.requests]

    def payloads_to(self, name: str) -> list[Any]:
        """The payloads sent to ``url(name)``."""
        with self._changed:
            return [r.payload for r in self.requests if r.path.endswith(f"/secret-token-{name}")]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Any]:
        """Wait until ``count`` requests came in (or ``timeout``); the payloads so far."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.requests) >= count, timeout)
            return [request.payload for request in self.requests]

    def start(self) -> FakeSlack:
        """Start serving in a thread."""
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hanging requests are released."""
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- serving ------------------------------------------------------------------------------------------

    def _next_answer(self) -> Any:
        with self._changed:
            return self._answers.popleft() if self._answers else self._default

    def _record(self, request: Request, problems: Iterable[str]) -> None:
        with self._changed:
            self.requests.append(request)
            self.violations.extend(f"{request.path}: {p}" for p in problems)
            self._changed.notify_all()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read the recorded requests instead

            def do_GET(self) -> None:
                fake._record(Request(self.path, dict(self.headers), None), ["method GET, expected POST"])
                self._reply(405, "method_not_allowed")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                problems = []
                if not (self.headers.get("Content-Type") or "").startswith("application/json"):
                    problems.append(f"Content-Type {self.headers.get('Content-Type')!r}, expected application/json")
                try:
                    payload = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    payload, problems = None, [*problems, f"the body is not JSON: {exc}"]
                else:
                    problems += check_payload(payload)
                fake._record(Request(self.path, dict(self.headers), payload), problems)
                if problems:
                    self._reply(400, "invalid_blocks")
                    return
                answer = fake._next_answer()
                if answer == "hang":
                    fake._release.wait(fake.hang_seconds)
                    self._reply(200, "ok")
                elif isinstance(answer, tuple) and answer[0] == 429:
                    self._reply(429, "rate_limited", {"Retry-After": str(answer[1])})
                elif isinstance(answer, int):
                    self._reply(answer, "internal_error" if answer >= 500 else "invalid_payload")
                else:
                    self._reply(200, "ok")

            def _reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
                data = body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout): nothing to answer

        return Handler
