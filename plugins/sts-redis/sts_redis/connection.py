"""One Redis connection pool and one pub/sub listener, shared by the store and the broker.

Redis errors never leave this plugin as redis-py exceptions: ``translate_errors`` turns an
unreachable server, a refused password or a refused write into the kernel's
``BackendUnavailableError`` / ``BackendError`` with a message naming the server (never
the password).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sts.plugin import BackendError, BackendUnavailableError, safe_url

log = logging.getLogger("sts.redis")

P = ParamSpec("P")
T = TypeVar("T")

#: The pub/sub listener reconnects after a delay doubling up to this (seconds).
MAX_RECONNECT_DELAY = 2.0
_QUIET_WAIT = 5.0


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Turn redis-py errors raised inside into the kernel's backend errors."""
    try:
        yield
    except rex.AuthenticationError as exc:
        raise BackendUnavailableError(f"Redis at {where} refused the credentials: {exc}") from None
    except (rex.ConnectionError, rex.TimeoutError, OSError) as exc:
        raise BackendUnavailableError(f"Redis at {where} is unreachable ({_reason(exc)})") from None
    except rex.ResponseError as exc:
        text = str(exc)
        if text.startswith("OOM") or "maxmemory" in text:
            raise BackendError(
                f"Redis at {where} refused the write because it reached its maxmemory limit; nothing was "
                f"stored (raise maxmemory, or shorten history.max_age / history.max_runs_per_task): {text}"
            ) from None
        if text.startswith(("NOPERM", "NOAUTH", "WRONGPASS")):
            raise BackendUnavailableError(f"Redis at {where} refused the command: {text}") from None
        if text.startswith("READONLY"):
            raise BackendUnavailableError(f"Redis at {where} is a read-only replica: {text}") from None
        raise BackendError(f"Redis at {where} refused a command: {text}") from None


def translate_errors(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate a coroutine method of an object with a ``connection`` attribute."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with translated(args[0].connection.where):  # type: ignore[attr-defined]
            return await method(*args, **kwargs)

    return wrapper


class RedisConnection:
    """The client both halves of the backend use, opened by the first and closed by the last.

    ``subscribe(channel, callback)`` registers a callback for a pub/sub channel; the listener
    calls ``callback(message_text)`` for each message and ``callback(None)`` after a
    reconnect, when messages may have been missed.
    """

    def __init__(self, url: str, *, connect_timeout: float, socket_timeout: float | None) -> None:
        self.url = url
        self.where = safe_url(url)
        self._options = {
            "socket_connect_timeout": connect_timeout,
            "socket_timeout": socket_timeout,
            "health_check_interval": 30,
            # No silent retries: a script whose reply was lost may have run (a retried enqueue
            # would queue twice, a retried ack would report a lost lease). The engine's loops
            # back off and try again; leases make that safe.
            "retry": Retry(NoBackoff(), 0),
        }
        self._users = 0
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}  # Lua source -> registered script, per client
        self._batch: list[tuple[Any, list[Any], asyncio.Future[Any]]] = []  # scripts for the next pipeline
        self._sending: set[asyncio.Future[Any]] = set()
        self._callbacks: dict[str, list[Callable[[str | None], None]]] = {}
        self._listener: asyncio.Task[None] | None = None

    @property
    def client(self) -> aioredis.Redis:
        """The client; only between ``open`` and ``close``."""
        if self._client is None:
            raise RuntimeError("the Redis backend is not open")
        return self._client

    async def open(self) -> None:
        """Connect (first user) and check that the server answers."""
        self._users += 1
        if self._client is not None:
            return
        try:
            client = aioredis.Redis.from_url(self.url, **self._options)
        except ValueError as exc:
            self._users -= 1
            raise BackendUnavailableError(f"redis.url {self.where!r} is not a Redis URL: {exc}") from None
        try:
            with translated(self.where):
                await client.ping()
        except BaseException:
            self._users -= 1
            await client.aclose()
            raise
        self._client = client
        self._scripts.clear()
        if self._callbacks:
            self._start_listener()

    async def close(self) -> None:
        """Disconnect once the last user closes."""
        self._users = max(self._users - 1, 0)
        if self._users or self._client is None:
            return
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        client, self._client = self._client, None
        await client.aclose()

    async def run_script(self, source: str, args: list[Any]) -> Any:
        """Run a Lua script (by its SHA once the server knows it) with ``args`` as ARGV.

        Scripts asked for in the same turn of the event loop (runs finishing side by side, fires
        claimed together) go to the server in one pipeline: one write and one round trip for
        all of them instead of one each. Each still runs atomically on its own, and each caller
        gets its own result or error.
        """
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
            return await script(args=args)  # the first call loads it on the server
        future = asyncio.get_running_loop().create_future()
        self._batch.append((script, args, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._send_batch)
        return await future

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        if self._client is None:  # closed before the batch went out: as if the server were gone
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(rex.ConnectionError("the connection was closed before the command was sent"))
            return
        if len(batch) == 1:
            script, args, future = batch[0]
            self._send(script(args=args), future)
        else:
            self._send(self._pipeline(batch), None)

    def _send(self, call: Awaitable[Any], future: asyncio.Future[Any] | None) -> None:
        """Run ``call`` in a task kept until it ends; with ``future``, hand its outcome there."""
        task = asyncio.ensure_future(call)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        if future is not None:
            task.add_done_callback(functools.partial(_settle, future))

    async def _pipeline(self, batch: list[tuple[Any, list[Any], asyncio.Future[Any]]]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for script, args, _ in batch:
                pipe.evalsha(script.sha, 0, *args)
            replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (script, args, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, rex.NoScriptError):  # the server lost its scripts (a restart): load, run
                self._send(script(args=args), future)
            elif future.done():
                continue  # its caller was cancelled; the script ran all the same
            elif isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def subscribe(self, channel: str, callback: Callable[[str | None], None]) -> None:
        """Call ``callback`` for every message on ``channel`` (and with None after a reconnect).

        Subscribe before ``open``: the listener subscribes to the channels known when it starts.
        """
        if self._client is not None:
            raise RuntimeError("subscribe before the connection opens")
        self._callbacks.setdefault(channel, []).append(callback)

    async def subscribed(self) -> None:
        """Wait until the listener is subscribed (so no notice sent from now on is missed)."""
        if self._listener is not None:
            while not self._ready.is_set() and not self._listener.done():
                await asyncio.wait([asyncio.ensure_future(self._ready.wait()), self._listener],
                                   return_when=asyncio.FIRST_COMPLETED)

    @property
    def listening(self) -> bool:
        """True while the pub/sub listener is subscribed (no notice can be missed right now)."""
        return self._listener is not None and not self._listener.done() and self._ready.is_set()

    def _start_listener(self) -> None:
        self._ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(), name="sts-redis-listener")

    async def _listen(self) -> None:
        delay = 0.5
        first, interrupted = True, False
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                with translated(self.where):
                    await pubsub.subscribe(*self._callbacks)
                    self._ready.set()
                    if not first:
                        log.warning("Redis at %s: notifications resumed; reloading what may have changed", self.where)
                        self._notify_all(None)
                    first, interrupted, delay = False, False, 0.5
                    while True:
                        # A bounded wait, not listen(): a quiet channel must not hit socket_timeout.
                        # get_message pings the server every health_check_interval, so a dead
                        # connection is still noticed.
                        message = await pubsub.get_message(timeout=_QUIET_WAIT)
                        if message is None or message.get("type") != "message":
                            continue
                        channel = _text(message["channel"])
                        data = _text(message["data"])
                        for callback in self._callbacks.get(channel, ()):
                            callback(data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the listener must outlive outages
                self._ready.clear()  # notices may be missed until the listener subscribes again
                if not interrupted:  # once per outage; consumers poll meanwhile
                    log.warning("notifications interrupted: %s; reconnecting with backoff", exc)
                    interrupted = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _notify_all(self, data: str | None) -> None:
        for callbacks in self._callbacks.values():
            for callback in callbacks:
                callback(data)


def _reason(exc: BaseException) -> str:
    """A short reason for a connection failure: redis-py's text without its trailing noise."""
    text = str(exc).strip().rstrip(".")
    if "Error 111 " in text or isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, rex.TimeoutError) or "Timeout" in text:
        return "timed out" + (f": {text}" if text and "Timeout" not in text else "")
    return text or type(exc).__name__


def _settle(future: asyncio.Future[Any], done: asyncio.Future[Any]) -> None:
    """Pass ``done``'s outcome to ``future`` unless its caller stopped waiting."""
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        future.set_result(done.result())


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
