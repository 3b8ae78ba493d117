"""Delivery to Slack on one daemon thread, so a slow or absent Slack never touches a run.

``submit`` only appends to a bounded queue (when full, the oldest message is dropped and the
drop counted in a log line). The thread posts each message with slack_sdk's
``WebhookClient`` (its own retry handlers off: they sleep with ``time.sleep``, which a
shutdown cannot interrupt) and retries here instead: connection errors, timeouts and 5xx
after an exponential backoff, 429 after its ``Retry-After`` (capped), at most
``max_attempts`` attempts in all; any other status is final. Every wait goes through
``wait(seconds)``, which returns True when the sender is told to stop at once, so tests
inject a wait that returns immediately, and shutdown never waits out a backoff.

One thread sends one message at a time, so a webhook that hangs or fails holds up the
messages behind it. To bound that, each webhook has a circuit breaker: after
``breaker_failures`` messages in a row to it were not delivered, messages to it are dropped
(counted, and logged in one line) for ``breaker_cooldown`` seconds; then the next message is
tried again, and one more failure opens the breaker again.

Logs go to ``sts.slack`` and name a webhook by its config name, never its URL.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import attrs

from sts_slack.redaction import SECRETS

log = logging.getLogger("sts.slack")
#: The logger slack_sdk's client is given (it carries the redacting filter).
CLIENT_LOGGER = "slack_sdk.webhook.client"
#: The longest backoff between two attempts (Retry-After has its own cap, ``max_retry_after``).
MAX_BACKOFF = 30.0
#: Messages in a row to one webhook that may fail before messages to it are dropped for a while.
BREAKER_FAILURES = 3
#: How long (seconds) messages to a failing webhook are dropped before it is tried again.
BREAKER_COOLDOWN = 60.0
_BODY_SHOWN = 200


@attrs.frozen
class Outgoing:
    """One message to post: the webhook's config name (for logs), its URL and the payload."""

    webhook: str
    url: str = attrs.field(repr=False)
    payload: Mapping[str, Any]
    #: What it is, for log lines: "failure alert for task etl".
    label: str


@attrs.frozen
class Response:
    """What Slack answered."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict)


Post = Callable[[str, Mapping[str, Any], float], Response]


def webhook_post() -> Post:
    """``post(url, payload, timeout)`` through slack_sdk's ``WebhookClient``, one client per URL.

    Raises what ``urlopen`` raises for connection errors and timeouts; HTTP errors come back
    as a ``Response`` with their status.
    """
    from slack_sdk.webhook import WebhookClient

    clients: dict[tuple[str, float], WebhookClient] = {}
    client_log = logging.getLogger(CLIENT_LOGGER)

    def post(url: str, payload: Mapping[str, Any], timeout: float) -> Response:
        client = clients.get((url, timeout))
        if client is None:
            client = clients[(url, timeout)] = WebhookClient(
                url, timeout=timeout, logger=client_log, retry_handlers=[]  # type: ignore[arg-type]
            )
        answer = client.send_dict(dict(payload))
        headers = {str(k).lower(): str(v) for k, v in (answer.headers or {}).items()}
        return Response(answer.status_code, answer.body or "", headers)

    return post


class Sender:
    """A bounded queue and the thread that empties it. ``start`` may follow ``close``."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_attempts: int = 3,
        backoff: float = 1.0,
        max_retry_after: float = 60.0,
        max_queue: int = 1000,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_cooldown: float = BREAKER_COOLDOWN,
        post: Post | None = None,
        wait: Callable[[float], bool] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self.max_queue = max_queue
        self.breaker_failures = breaker_failures
        self.breaker_cooldown = breaker_cooldown
        self._post = post
        self._injected_wait = wait
        self._monotonic = monotonic
        self._queue: collections.deque[Outgoing] = collections.deque()
        self._ready = threading.Condition()
        self._abort = threading.Event()
        self._closing = False
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self._on_idle: Callable[[], None] | None = None
        self._idle_every = 30.0
        #: Per webhook name (sender thread only): messages in a row not delivered, and for an
        #: open breaker, until when (monotonic) and how many messages it dropped.
        self._failures: dict[str, int] = {}
        self._open: dict[str, tuple[float, int]] = {}
        #: Counters for logs and tests (``skipped``: dropped by an open breaker).
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.skipped = 0
        self.attempts = 0

    # -- the caller's side (event thread) -------------------------------------------------------------

    def submit(self, item: Outgoing) -> None:
        """Queue ``item``; never blocks. When the queue is full the oldest item is dropped."""
        dropped: Outgoing | None = None
        with self._ready:
            if len(self._queue) >= self.max_queue:
                dropped = self._queue.popleft()
                self.dropped += 1
            count = self.dropped
            self._queue.append(item)
            self._ready.notify()
        if dropped is not None and count & (count - 1) == 0:  # 1, 2, 4, 8, ...: bounded noise, visible count
            log.warning("slack: the send queue is full (%d); dropped the oldest message (%s); %d dropped so far",
                        self.max_queue, dropped.label, count)

    @property
    def pending(self) -> int:
        """Messages queued and not yet taken by the thread."""
        with self._ready:
            return len(self._queue)

    def start(self, on_idle: Callable[[], None] | None = None, idle_every: float = 30.0) -> None:
        """Start the thread (if not running). ``on_idle`` runs on it about every ``idle_every``
        seconds while it has nothing to send (the throttle's summaries come from there)."""
        with self._ready:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing, self._deadline = False, None
            self._abort.clear()
            self._on_idle, self._idle_every = on_idle, idle_every
            self._thread = threading.Thread(target=self._run, name="sts-slack-sender", daemon=True)
            self._thread.start()

    def close(self, grace: float) -> None:
        """Deliver what is queued for up to ``grace`` seconds, then stop (an HTTP request in
        progress may add up to ``timeout``)."""
        thread = self._thread
        if thread is None:
            return
        with self._ready:
            self._closing = True
            self._deadline = self._monotonic() + grace
            self._ready.notify()
        thread.join(grace)
        if thread.is_alive():
            self._abort.set()
            with self._ready:
                self._ready.notify()
            thread.join(self.timeout + 1.0)
        left = self.pending
        if left:
            log.warning("slack: %d message(s) not delivered at shutdown (grace %gs)", left, grace)
            with self._ready:
                self._queue.clear()
        self._thread = None

    # -- the thread --------------------------------------------------------------------------------------

    def _run(self) -> None:
        post = self._post or webhook_post()
        last_idle = self._monotonic()
        try:
            while True:
                with self._ready:
                    while not self._queue and not self._closing and not self._abort.is_set():
                        remaining = self._idle_every - (self._monotonic() - last_idle)
                        if remaining <= 0:
                            break
                        self._ready.wait(remaining)
                    if self._abort.is_set() or (self._closing and not self._queue):
                        return
                    item = self._queue.popleft() if self._queue else None
                if item is not None and self._breaker_allows(item.webhook):
                    self._breaker_record(item.webhook, self._deliver(post, item))
                if self._monotonic() - last_idle >= self._idle_every:
                    last_idle = self._monotonic()
                    self._idle()
        finally:
            for webhook in list(self._open):
                self._breaker_report(webhook)

    def _breaker_allows(self, webhook: str) -> bool:
        """False (the message is dropped and counted) while ``webhook``'s breaker is open."""
        if webhook not in self._open:
            return True
        until, skipped = self._open[webhook]
        if self._monotonic() < until:
            self._open[webhook] = (until, skipped + 1)
            self.skipped += 1
            return False
        self._breaker_report(webhook)  # the cooldown is over: this message tries the webhook again
        return True

    def _breaker_record(self, webhook: str, delivered: bool) -> None:
        if delivered:
            self._failures.pop(webhook, None)
            return
        failures = self._failures[webhook] = self._failures.get(webhook, 0) + 1
        if failures >= self.breaker_failures:
            self._open[webhook] = (self._monotonic() + self.breaker_cooldown, 0)
            log.error("slack: %d message(s) in a row via webhook %r were not delivered; messages to it are dropped "
                      "for the next %gs", failures, webhook, self.breaker_cooldown)

    def _breaker_report(self, webhook: str) -> None:
        _, skipped = self._open.pop(webhook)
        if skipped:
            log.error("slack: %d message(s) via webhook %r were dropped while it was failing", skipped, webhook)

    def _idle(self) -> None:
        if self._on_idle is None:
            return
        try:
            self._on_idle()
        except Exception:
            log.exception("slack: checking for due throttle summaries failed")

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; True when told to stop at once."""
        if self._injected_wait is not None:
            return self._injected_wait(seconds) or self._abort.is_set()
        return self._abort.wait(seconds)

    def _deliver(self, post: Post, item: Outgoing) -> bool:
        """Post ``item``, retrying as configured; True when Slack accepted it."""
        problem = "not tried"
        for attempt in range(1, self.max_attempts + 1):
            self.attempts += 1
            try:
                answer = post(item.url, item.payload, self.timeout)
            except Exception as exc:  # noqa: BLE001 - connection errors, timeouts: all retried
                problem, delay = _describe(exc), self._backoff(attempt)
            else:
                if 200 <= answer.status < 300:
                    self.sent += 1
                    log.debug("slack: sent the %s via webhook %r (attempt %d)", item.label, item.webhook, attempt)
                    return True
                problem = f"HTTP {answer.status} {_shown(answer.body)}".rstrip()
                if answer.status == 429:
                    delay = min(_retry_after(answer.headers, self._backoff(attempt)), self.max_retry_after)
                elif answer.status >= 500:
                    delay = self._backoff(attempt)
                else:
                    self.failed += 1
                    log.error("slack: Slack refused the %s via webhook %r: %s; not retried (check the webhook "
                              "and the payload)", item.label, item.webhook, problem)
                    return False
            if attempt == self.max_attempts:
                break
            if self._deadline is not None and self._monotonic() + delay > self._deadline:
                problem += "; no time left to retry before shutdown"
                break
            log.info("slack: the %s via webhook %r failed (attempt %d of %d: %s); retrying in %gs",
                     item.label, item.webhook, attempt, self.max_attempts, problem, delay)
            if self._wait(delay):
                problem += "; stopped while waiting to retry"
                break
        self.failed += 1
        log.error("slack: could not deliver the %s via webhook %r after %d attempt(s): %s; the alert is dropped",
                  item.label, item.webhook, attempt, problem)
        return False

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF)


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    text = f"{type(exc).__name__}: {reason if reason is not None else exc}"
    return SECRETS.redact(text)[:_BODY_SHOWN]


def _shown(body: str) -> str:
    return SECRETS.redact(" ".join(body.split()))[:_BODY_SHOWN]


def _retry_after(headers: Mapping[str, str], fallback: float) -> float:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), else ``fallback``."""
    value = headers.get("retry-after")
    if value is None:
        return fallback
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return fallback
    return max(0.0, when.timestamp() - time.time())
