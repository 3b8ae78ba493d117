"""One AMQP connection on the scheduler's event loop, with publisher confirms, that comes back by
itself after the server goes away.

pika's connections are not thread-safe. Rather than a ``BlockingConnection`` in a thread of its
own (every call a hand-off between threads, and one publish confirmed at a time), this uses
pika's asyncio adapter: the connection lives on the engine's event loop, its callbacks are
resolved into futures here, and many publishes wait for their confirms at once. Nothing here
blocks the loop.

When the connection or its channel closes unexpectedly, every waiting call fails at once with
``BackendUnavailableError``, :attr:`AmqpLink.generation` moves on (deliveries of the old channel
can no longer be acked: the server requeues them) and a background task reconnects after a
delay doubling up to ``max_reconnect_delay``, then calls ``on_up`` to declare what the broker
needs again. Errors never leave as pika exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pika
import pika.exceptions
from pika.adapters.asyncio_connection import AsyncioConnection
from pika.adapters.utils.connection_workflow import AMQPConnectionWorkflowFailed, AMQPConnectorPhaseErrorBase
from pika.channel import Channel
from pika.spec import Basic

from sts.plugin import BackendError, BackendUnavailableError

log = logging.getLogger("sts.rabbitmq")
# pika logs each failed connection attempt at ERROR with a traceback; this module reports them
# itself, once per outage, with the server's address.
logging.getLogger("pika").setLevel(logging.CRITICAL)

#: The first delay before reconnecting; it doubles up to ``max_reconnect_delay``.
FIRST_RECONNECT_DELAY = 0.1

#: What ``basic.get`` returns: the method, the properties and the body.
Got = tuple[Basic.GetOk, pika.BasicProperties, bytes]


class AmqpLink:
    """One connection and one confirm-mode channel, reconnecting when lost.

    ``on_up(channel)`` runs after every (re)connection, before other calls are let through: the
    broker declares its queues there. ``on_down()`` runs when the channel is lost: deliveries it made are void.
    """

    def __init__(
        self,
        parameters: pika.URLParameters,
        where: str,
        *,
        connect_timeout: float,
        confirm_timeout: float,
        max_reconnect_delay: float,
        on_up: Callable[[Channel], Awaitable[None]],
        on_down: Callable[[], None],
    ) -> None:
        self.parameters = parameters
        self.where = where
        self.connect_timeout = connect_timeout
        self.confirm_timeout = confirm_timeout
        self.max_reconnect_delay = max_reconnect_delay
        self._on_up = on_up
        self._on_down = on_down
        self.generation = 0
        self._connection: AsyncioConnection | None = None
        self._channel: Channel | None = None
        self._up = False
        self._opened = False  # connected once: from then on a lost connection is re-established
        self._closing = False
        self._down_reason = "not connected yet"
        self._next_tag = 1
        self._confirms: dict[int, tuple[asyncio.Future[None], str | None]] = {}
        self._returned: set[str] = set()
        self._waiting: set[asyncio.Future[Any]] = set()
        self._side_waiting: dict[int, set[asyncio.Future[Any]]] = {}
        self._get_lock = asyncio.Lock()
        self._get_results: dict[int, asyncio.Future[Any]] = {}
        self._get_empty_hooked: set[int] = set()
        self._reconnector: asyncio.Task[None] | None = None
        #: Called (on the loop) after every successful reconnection.
        self.on_reconnect: list[Callable[[], None]] = []

    # -- state ----------------------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def channel(self) -> Channel:
        """The open channel; raises ``BackendUnavailableError`` while there is none."""
        if not self._up or self._channel is None or not self._channel.is_open:
            reason = self._down_reason if not self._up else "its channel is closing"
            raise BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable ({reason})")
        return self._channel

    # -- open and close -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, or raise ``BackendUnavailableError`` saying why."""
        self._closing = False
        self._get_lock = asyncio.Lock()  # bound to this event loop (a scheduler may start on a new one)
        await self._connect()

    def drop(self, reason: str) -> None:
        """Close the connection as if it were lost: it is re-established (and set up) at once."""
        connection = self._connection
        if connection is not None and connection.is_open:
            self._lost(reason)
            connection.close()

    async def close(self) -> None:
        """Close the connection (unacked deliveries go back to their queues) and stop reconnecting."""
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnector
            self._reconnector = None
        connection = self._connection
        self._mark_down("closed")
        if connection is not None and not connection.is_closed and not connection.is_closing:
            closed = asyncio.get_running_loop().create_future()
            connection.add_on_close_callback(lambda *_: closed.done() or closed.set_result(None))
            connection.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed, self.connect_timeout)
        self._connection = None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[AsyncioConnection] = loop.create_future()

        def on_open(connection: AsyncioConnection) -> None:
            if not opened.done():
                opened.set_result(connection)

        def on_open_error(connection: AsyncioConnection, error: BaseException | str) -> None:
            if not opened.done():
                opened.set_exception(BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable "
                                                             f"({_reason(error)})"))

        connection = AsyncioConnection(
            self.parameters, on_open_callback=on_open, on_open_error_callback=on_open_error,
            on_close_callback=self._connection_closed, custom_ioloop=loop,
        )
        try:
            await asyncio.wait_for(asyncio.shield(opened), self.connect_timeout)
            channel = await self._open_channel(connection)
        except TimeoutError:
            _abort(connection)
            raise BackendUnavailableError(
                f"RabbitMQ at {self.where} is unreachable (no connection within {self.connect_timeout:g}s)"
            ) from None
        except BaseException:
            _abort(connection)
            raise
        self._connection, self._channel = connection, channel
        self._next_tag = 1
        self.generation += 1
        try:
            await self._on_up(channel)
        except BaseException:
            self._connection = self._channel = None
            _abort(connection)
            raise
        self._up = self._opened = True

    async def _open_channel(self, connection: AsyncioConnection) -> Channel:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Channel] = loop.create_future()
        connection.channel(on_open_callback=lambda channel: ready.done() or ready.set_result(channel))
        channel = await asyncio.wait_for(ready, self.connect_timeout)
        channel.add_on_close_callback(self._channel_closed)
        channel.add_on_return_callback(self._message_returned)
        confirmed: asyncio.Future[None] = loop.create_future()
        channel.confirm_delivery(self._confirmed,
                                 callback=lambda _frame: confirmed.done() or confirmed.set_result(None))
        await asyncio.wait_for(confirmed, self.connect_timeout)
        return channel

    # -- losing the connection ------------------------------------------------------------------------

    def _connection_closed(self, connection: AsyncioConnection, reason: BaseException) -> None:
        if connection is not self._connection:
            return
        self._lost(_reason(reason))

    def _channel_closed(self, channel: Channel, reason: BaseException) -> None:
        if channel is not self._channel:
            return
        self._lost(f"channel closed: {_reason(reason)}")
        connection = self._connection
        if connection is not None and connection.is_open:
            connection.close()  # one channel per connection: start again from the connection

    def _lost(self, reason: str) -> None:
        was_up = self._up
        self._mark_down(reason)
        if self._closing or not self._opened:
            return
        if was_up:
            log.warning("RabbitMQ at %s: connection lost (%s); reconnecting", self.where, reason)
        if self._reconnector is None or self._reconnector.done():
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect())

    def _mark_down(self, reason: str) -> None:
        was_up = self._up
        self._up = False
        self._down_reason = reason
        self._channel = None
        error = BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable ({reason})")
        for future, _ in self._confirms.values():
            if not future.done():
                future.set_exception(error)
        self._confirms.clear()
        self._returned.clear()
        for future in self._waiting:
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()
        self._get_results.clear()
        self._get_empty_hooked.clear()
        if was_up:
            self._on_down()

    async def _reconnect(self) -> None:
        delay = FIRST_RECONNECT_DELAY
        while not self._closing:
            await asyncio.sleep(delay)
            old = self._connection
            self._connection = None
            if old is not None:
                _abort(old)
            try:
                await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - try again after the next delay
                self._down_reason = str(exc)
                log.debug("RabbitMQ at %s: reconnecting failed: %s", self.where, exc)
                delay = min(delay * 2, self.max_reconnect_delay)
                continue
            log.warning("RabbitMQ at %s: reconnected", self.where)
            for on_back in self.on_reconnect:
                try:
                    on_back()
                except Exception:
                    log.exception("RabbitMQ at %s: a reconnect watcher failed", self.where)
            return

    # -- publishing with confirms ---------------------------------------------------------------------

    async def publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Publish and wait for the server's confirm: once this returns, the message is in a
        queue (mandatory: an unroutable message is an error, not a silent drop)."""
        channel = self.channel
        tag = self._next_tag
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable ({_reason(exc)})") from None
        self._next_tag += 1
        self._confirms[tag] = (future, properties.message_id)
        try:
            await asyncio.wait_for(asyncio.shield(future), self.confirm_timeout)
        except TimeoutError:
            self._confirms.pop(tag, None)
            self._returned.discard(properties.message_id or "")
            raise BackendUnavailableError(
                f"RabbitMQ at {self.where} did not confirm a publish within {self.confirm_timeout:g}s"
            ) from None

    def _confirmed(self, frame: Any) -> None:
        method = frame.method
        tags = [t for t in self._confirms if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            future, message_id = self._confirms.pop(tag, (None, None))
            if future is None or future.done():
                continue
            if isinstance(method, Basic.Nack):
                future.set_exception(BackendError(f"RabbitMQ at {self.where} refused a message (nack): a queue "
                                                  f"is full or unavailable; nothing was queued"))
            elif message_id is not None and message_id in self._returned:
                self._returned.discard(message_id)
                future.set_exception(BackendError(f"RabbitMQ at {self.where} could not route run {message_id}: "
                                                  f"a queue or binding of the broker is missing"))
            else:
                future.set_result(None)

    def _message_returned(self, channel: Channel, method: Basic.Return, properties: Any, body: bytes) -> None:
        if properties.message_id is not None:
            self._returned.add(properties.message_id)
        log.error("RabbitMQ at %s returned message %s: %s %s", self.where, properties.message_id,
                  method.reply_code, method.reply_text)

    # -- calls with replies ---------------------------------------------------------------------------

    async def call(self, start: Callable[[Channel, Callable[[Any], None]], None],
                   channel: Channel | None = None) -> Any:
        """Start a synchronous AMQP method with ``start(channel, callback)`` and return its reply
        frame; fails with ``BackendUnavailableError`` if the channel closes meanwhile."""
        main = channel is None
        channel = channel or self.channel
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        if not main:
            self._side_waiting.setdefault(channel.channel_number, set()).add(future)
        try:
            start(channel, lambda frame: future.done() or future.set_result(frame))
            return await asyncio.wait_for(asyncio.shield(future), self.confirm_timeout)
        except TimeoutError:
            raise BackendUnavailableError(
                f"RabbitMQ at {self.where} did not answer within {self.confirm_timeout:g}s"
            ) from None
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable ({_reason(exc)})") from None
        finally:
            self._waiting.discard(future)
            self._side_waiting.get(channel.channel_number, set()).discard(future)

    async def get(self, queue: str, channel: Channel | None = None) -> Got | None:
        """``basic.get`` one message from ``queue`` (unacked), or None when it is empty."""
        channel = channel or self.channel
        number = channel.channel_number
        if number not in self._get_empty_hooked:
            channel.add_callback(functools.partial(self._got_empty, number), [Basic.GetEmpty], one_shot=False)
            self._get_empty_hooked.add(number)
        async with self._get_lock:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._get_results[number] = future
            self._waiting.add(future)
            try:
                channel.basic_get(queue, lambda _ch, method, props, body: future.done()
                                  or future.set_result((method, props, body)))
                return await asyncio.wait_for(asyncio.shield(future), self.confirm_timeout)
            except TimeoutError:
                # pika still waits for that reply on this channel and refuses another get: start over.
                if channel is self._channel:
                    self.drop("no reply to basic.get")
                elif channel.is_open:
                    channel.close()
                raise BackendUnavailableError(
                    f"RabbitMQ at {self.where} did not answer within {self.confirm_timeout:g}s"
                ) from None
            except (pika.exceptions.AMQPError, OSError) as exc:
                raise BackendUnavailableError(f"RabbitMQ at {self.where} is unreachable ({_reason(exc)})") from None
            finally:
                self._get_results.pop(number, None)
                self._waiting.discard(future)

    def _got_empty(self, number: int, _frame: Any) -> None:
        future = self._get_results.get(number)
        if future is not None and not future.done():
            future.set_result(None)

    @contextlib.asynccontextmanager
    async def side_channel(self) -> AsyncIterator[Channel]:
        """A short-lived channel of its own, for calls that may close it (a passive declare of a
        queue that is missing) or that must not disturb the main channel's deliveries. Calls on
        it fail with ``BackendError`` if the server closes it."""
        if not self._up or self._connection is None:
            self.channel  # noqa: B018 - raises BackendUnavailableError with the reason
        connection = self._connection
        assert connection is not None
        future: asyncio.Future[Channel] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        try:
            connection.channel(on_open_callback=lambda ch: future.done() or future.set_result(ch))
            channel = await asyncio.wait_for(asyncio.shield(future), self.confirm_timeout)
        except TimeoutError:
            raise BackendUnavailableError(f"RabbitMQ at {self.where} did not open a channel") from None
        finally:
            self._waiting.discard(future)
        channel.add_on_close_callback(self._side_channel_closed)
        try:
            yield channel
        finally:
            self._get_empty_hooked.discard(channel.channel_number)
            if channel.is_open:
                channel.close()

    def _side_channel_closed(self, channel: Channel, reason: BaseException) -> None:
        error = BackendError(f"RabbitMQ at {self.where} closed a channel: {_reason(reason)}")
        for future in self._side_waiting.pop(channel.channel_number, set()):
            if not future.done():
                future.set_exception(error)
        future = self._get_results.get(channel.channel_number)
        if future is not None and not future.done():
            future.set_exception(error)


def _abort(connection: AsyncioConnection) -> None:
    with contextlib.suppress(Exception):
        if not connection.is_closed and not connection.is_closing:
            connection.close()


def _reason(error: BaseException | str) -> str:
    """A short reason for a pika error: the server's reply text or the socket error."""
    if isinstance(error, str):
        return error
    if isinstance(error, pika.exceptions.ProbableAuthenticationError | pika.exceptions.ProbableAccessDeniedError):
        return f"credentials or virtual host refused: {error}"
    if isinstance(error, AMQPConnectionWorkflowFailed) and error.exceptions:
        return _reason(error.exceptions[-1])  # the last attempt's failure
    if isinstance(error, AMQPConnectorPhaseErrorBase):
        return _reason(error.exception)
    if isinstance(error, pika.exceptions.AMQPConnectionError) and error.args:
        inner = error.args[0]
        if isinstance(inner, BaseException):
            return _reason(inner)
    if isinstance(error, ssl.SSLError):
        return f"TLS: {error.reason or error}" + (f" ({error.verify_message})"
                                                 if getattr(error, "verify_message", None) else "")
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return str(error) or type(error).__name__
