"""``RabbitBroker``: the kernel's Broker on RabbitMQ queues.

How the Broker contract maps onto AMQP:

* **enqueue** publishes a persistent message and waits for the publisher confirm; a run due
  later goes through the delay ladder (``sts_rabbitmq.topology``).
* **consume** takes pushed deliveries from a consumer whose prefetch is the worker's
  concurrency (``consume(0)``, a non-blocking look, uses ``basic.get``). Each delivery gets a
  lease: the message stays unacked on this channel while the run executes.
* **leases** are the channel: while the connection lives the run is ours and ``extend`` renews
  it locally. A worker that dies, or loses its connection, has its unacked runs requeued by the
  server, which counts the redelivery (``x-delivery-count``); acks of the old channel then fail,
  so a stale worker cannot ack a run another worker was given. A lease left to expire (the
  worker stopped renewing it) is requeued by the broker itself on its next ``consume``.
* **ack with a retry** publishes the retry (confirmed) before acking, so a crash in between
  leaves both: at least once, never lost.
* **release** (a worker stopping) publishes a copy of the message counting one more hand-back
  and acks the original; the server's count would not tell a hand-back from a crash.
* **dead_letter** publishes to ``P.dead`` with the reason, then acks.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import pika
from pika.spec import Basic

from sts.plugin import BackendError, Clock, Delivery, Run
from sts_rabbitmq import codec
from sts_rabbitmq.codec import Envelope
from sts_rabbitmq.connection import AmqpLink
from sts_rabbitmq.settings import RabbitSettings
from sts_rabbitmq.topology import (
    LEVELS,
    MAX_DELAY_MS,
    Names,
    dead_queue_arguments,
    delay_queue_arguments,
    delay_route,
    level_pattern,
    runs_queue_arguments,
)

log = logging.getLogger("sts.rabbitmq")

#: The most dead letters ``dead_letters`` reads to find the newest.
DEAD_LETTER_SCAN = 10_000


@attrs.define(eq=False)
class _Message:
    """A message delivered to this process: where it came from and what it carries."""

    tag: int
    generation: int
    properties: pika.BasicProperties
    body: bytes


@attrs.define(eq=False)
class _Held:
    """A message handed to the engine under a lease."""

    message: _Message
    run: Run
    envelope: Envelope
    delivery_count: int
    lease_until: float


class RabbitBroker:
    """Runs delivered through RabbitMQ quorum queues; see the module docstring."""

    durable = True
    # A publish whose confirm is lost (the connection dropped) is repeated: both copies may arrive.
    may_duplicate = True
    # The server counts deliveries no worker ran (dropped from a prefetch buffer, an ack in flight
    # when the server died): the count may skip.
    counts_may_skip = True

    def __init__(self, settings: RabbitSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.names = Names(settings.prefix)
        self.link = AmqpLink(
            settings.parameters(),
            settings.where,
            connect_timeout=settings.connect_timeout,
            confirm_timeout=settings.confirm_timeout,
            max_reconnect_delay=settings.max_reconnect_delay,
            on_up=self._set_up,
            on_down=self._channel_lost,
        )
        self._tokens = itertools.count(1)
        self._held: dict[int, _Held] = {}
        self._pushed: collections.deque[_Message] = collections.deque()
        self._arrived = asyncio.Event()
        self._consuming = False
        self._consumer_tag: str | None = None

    def __repr__(self) -> str:
        return f"<RabbitBroker {self.settings.where} prefix={self.settings.prefix!r}>"

    # -- open and close -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and declare the queues; raises ``BackendUnavailableError`` naming the server."""
        self._arrived = asyncio.Event()  # bound to this event loop (a scheduler may start on a new one)
        await self.link.open()

    async def stop_consuming(self) -> None:
        """Take no more runs (the worker stops) and hand back those pushed here but not taken."""
        self._consuming = False
        if not self.link.up:
            return
        try:
            await self._stop_consumer()
            while self._pushed:
                await self._hand_back_unstarted(self._pushed.popleft())
        except BackendError as exc:
            log.warning("RabbitMQ at %s: handing back unstarted runs failed (%s); the server requeues them",
                        self.settings.where, exc)

    async def close(self) -> None:
        """Stop consuming, hand back runs pushed here but never started, and disconnect."""
        await self.stop_consuming()
        self._pushed.clear()
        self._held.clear()
        await self.link.close()

    async def _set_up(self, channel: Any) -> None:
        """Declare the queues, exchanges and bindings (idempotent), then resume consuming."""
        names = self.names
        call = self.link.call
        await call(lambda ch, cb: ch.exchange_declare(names.deliver, "fanout", durable=True, callback=cb), channel)
        await call(lambda ch, cb: ch.queue_declare(names.runs, durable=True, arguments=runs_queue_arguments(names),
                                                    callback=cb), channel)
        await call(lambda ch, cb: ch.queue_bind(names.runs, names.deliver, callback=cb), channel)
        dead_arguments = dead_queue_arguments(self.settings.max_dead_letters)
        await call(lambda ch, cb: ch.queue_declare(names.dead, durable=True, arguments=dead_arguments, callback=cb),
                   channel)
        for level in range(LEVELS):
            name = names.delay(level)
            arguments = delay_queue_arguments(names, level)
            await call(lambda ch, cb, n=name: ch.exchange_declare(n, "topic", durable=True, callback=cb), channel)
            await call(lambda ch, cb, n=name, a=arguments: ch.queue_declare(n, durable=True, arguments=a, callback=cb),
                       channel)
            await call(lambda ch, cb, n=name, lv=level: ch.queue_bind(n, n, level_pattern(lv, "1"), callback=cb),
                       channel)
        for level in range(LEVELS):
            await call(lambda ch, cb, lv=level: ch.exchange_bind(names.below(lv), names.delay(lv),
                                                                  level_pattern(lv, "0"), callback=cb), channel)
        await call(lambda ch, cb: ch.basic_qos(prefetch_count=self.settings.prefetch, callback=cb), channel)
        channel.add_on_cancel_callback(self._consumer_cancelled)
        if self._consuming:
            self._consumer_tag = channel.basic_consume(names.runs, self._on_message, auto_ack=False)

    def _consumer_cancelled(self, _frame: Any) -> None:
        """The server cancelled our consumer (its queue was deleted or moved): start again from a
        new connection, which declares the queues and consumes anew."""
        self._consumer_tag = None
        log.warning("RabbitMQ at %s cancelled the consumer of %s; reconnecting", self.settings.where,
                    self.names.runs)
        self.link.drop("the server cancelled the consumer")

    def watch_availability(self, on_back: Callable[[], None]) -> None:
        """Call ``on_back()`` each time the connection comes back after a loss."""
        self.link.on_reconnect.append(on_back)

    def _channel_lost(self) -> None:
        # The server requeues every unacked message of the lost channel; none of ours is valid.
        self._pushed.clear()
        self._consumer_tag = None
        self._arrived.set()  # waiting consumers see the link down and say so

    # -- enqueue --------------------------------------------------------------------------------------

    async def enqueue(self, run: Run, at: datetime | None = None) -> None:
        """Queue ``run`` now, or through the delay ladder not before ``at``; returns once the
        server confirmed it."""
        await self._publish_run(run, at, Envelope())

    async def _publish_run(self, run: Run, at: datetime | None, envelope: Envelope) -> None:
        body = codec.encode_run(run)
        delay_ms = 0 if at is None else math.ceil((at - self.clock.now()).total_seconds() * 1000)
        if delay_ms <= 0:
            await self.link.publish("", self.names.runs, body, codec.properties(run, envelope))
            return
        if delay_ms > MAX_DELAY_MS:  # beyond the ladder: go round again on arrival
            envelope = attrs.evolve(envelope, not_before_ms=codec.epoch_ms(at))  # type: ignore[arg-type]
            delay_ms = MAX_DELAY_MS
        level, key = delay_route(delay_ms)
        await self.link.publish(self.names.delay(level), key, body, codec.properties(run, envelope))

    # -- consume --------------------------------------------------------------------------------------

    async def consume(self, timeout: float | None) -> Delivery | None:
        """The next run under a lease, or None after ``timeout`` seconds."""
        deliveries = await self.consume_many(1, timeout)
        return deliveries[0] if deliveries else None

    async def consume_many(self, limit: int, timeout: float | None) -> list[Delivery]:
        """Up to ``limit`` runs, each under its own lease; an empty list after ``timeout``."""
        self._expire_leases()
        taken = await self._take(limit)
        if taken:
            return taken
        if timeout is not None and timeout <= 0:
            return await self._get(limit)
        if not self._consuming:
            self._consuming = True
            self._consumer_tag = self.link.channel.basic_consume(self.names.runs, self._on_message, auto_ack=False)
        clock = self.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        while True:
            if not self.link.up:
                self.link.channel  # noqa: B018 - raises BackendUnavailableError with the reason
            self._arrived.clear()
            now = clock.monotonic()
            wait = None if deadline is None else deadline - now
            expiry = min((held.lease_until for held in self._held.values()), default=None)
            if expiry is not None:
                wait = expiry - now if wait is None else min(wait, expiry - now)
            await clock.wait(self._arrived, None if wait is None else max(wait, 0.0))
            self._expire_leases()
            taken = await self._take(limit)
            if taken:
                return taken
            if deadline is not None and clock.monotonic() >= deadline - 1e-9:
                return []

    def _on_message(self, channel: Any, method: Basic.Deliver, properties: pika.BasicProperties, body: bytes) -> None:
        self._pushed.append(_Message(method.delivery_tag, self.link.generation, properties, body))
        self._arrived.set()

    async def _get(self, limit: int) -> list[Delivery]:
        """What is ready now, through ``basic.get`` (no consumer needed)."""
        taken: list[Delivery] = []
        while len(taken) < limit:
            got = await self.link.get(self.names.runs)
            if got is None:
                break
            method, properties, body = got
            self._pushed.append(_Message(method.delivery_tag, self.link.generation, properties, body))
            taken.extend(await self._take(limit - len(taken)))
        return taken

    async def _take(self, limit: int) -> list[Delivery]:
        """Turn pushed messages into leased deliveries; dead-letter what cannot be read, and send
        a run that arrived before its time round again."""
        taken: list[Delivery] = []
        generation = self.link.generation
        while self._pushed and len(taken) < limit:
            message = self._pushed.popleft()
            if message.generation != generation:
                continue
            try:
                run = codec.decode_run(message.body)
            except ValueError as exc:
                if not await self._settle_aside(message, taken, self._reject_unreadable(message, str(exc))):
                    break
                continue
            envelope, redelivered = codec.envelope_of(message.properties)
            if envelope.not_before_ms is not None and envelope.not_before_ms > codec.epoch_ms(self.clock.now()):
                again = attrs.evolve(envelope, deliveries=envelope.deliveries + redelivered)
                if not await self._settle_aside(message, taken, self._send_round_again(message, run, again)):
                    break
                continue
            token = next(self._tokens)
            count = envelope.deliveries + redelivered + 1
            lease_until = self.clock.monotonic() + self.settings.lease_time
            self._held[token] = _Held(message, run, envelope, count, lease_until)
            taken.append(Delivery(run=run, token=token, lease_until=lease_until, delivery_count=count,
                                  handed_back=envelope.handed_back))
        return taken

    async def _settle_aside(self, message: _Message, taken: list[Delivery], step: Awaitable[None]) -> bool:
        """Take ``step`` for a message that is not handed out (it moves elsewhere). If it fails,
        the message goes back to its queue; the failure is raised unless runs were already taken
        in this call (they are handed out; it is logged instead): False then ends the batch."""
        try:
            await step
        except (BackendError, asyncio.CancelledError) as exc:
            if message.generation == self.link.generation and self.link.up:
                self.link.channel.basic_nack(message.tag, requeue=True)
            if not taken or isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("RabbitMQ at %s: moving message %s failed (%s); it went back to %s", self.settings.where,
                        message.properties.message_id, exc, self.names.runs)
            return False
        return True

    async def _send_round_again(self, message: _Message, run: Run, envelope: Envelope) -> None:
        """A run delayed beyond the ladder's reach arrived early: through the ladder once more."""
        assert envelope.not_before_ms is not None
        await self._publish_run(run, _from_epoch_ms(envelope.not_before_ms), envelope)
        self._basic_ack(message)

    async def _reject_unreadable(self, message: _Message, reason: str) -> None:
        log.error("RabbitMQ at %s: message %s in %s is not a run (%s); moved to %s", self.settings.where,
                  message.properties.message_id, self.names.runs, reason, self.names.dead)
        props = pika.BasicProperties(
            content_type=message.properties.content_type, delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message.properties.message_id,
            headers={codec.REASON: f"unreadable: {reason}", codec.DEAD_AT: codec.epoch_ms(self.clock.now())},
        )
        await self.link.publish("", self.names.dead, message.body, props)
        self._basic_ack(message)

    def _expire_leases(self) -> None:
        """Requeue runs whose lease ran out without being renewed (their worker stalled)."""
        now = self.clock.monotonic()
        for token, held in list(self._held.items()):
            if held.lease_until > now:
                continue
            del self._held[token]
            if held.message.generation == self.link.generation and self.link.up:
                self.link.channel.basic_nack(held.message.tag, requeue=True)

    # -- leases ---------------------------------------------------------------------------------------

    def _current(self, delivery: Delivery) -> _Held | None:
        """What this delivery holds, if its lease is still ours."""
        held = self._held.get(delivery.token)
        if held is None:
            return None
        if held.message.generation != self.link.generation:
            del self._held[delivery.token]  # the channel it came on is gone: the server requeued it
            return None
        if not self.link.up:
            return None  # the connection is lost: the server requeues the message for another worker
        return held

    async def extend(self, delivery: Delivery) -> bool:
        """Renew the lease (the message stays unacked on our channel); False if it was lost."""
        held = self._current(delivery)
        if held is None:
            return False
        held.lease_until = delivery.lease_until = self.clock.monotonic() + self.settings.lease_time
        return True

    async def ack(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        """Forget the run; first queue ``then`` (its retry), confirmed, so a crash between the two
        leaves the retry queued and the run redelivered (it is then completed, not run again)."""
        held = self._current(delivery)
        if held is None:
            return False
        if then is not None:
            await self._publish_run(then, at, Envelope())
        return self._settle(delivery, held)

    async def release(self, delivery: Delivery) -> bool:
        """Hand the run back for another worker: a copy counting this hand-back, then the ack."""
        held = self._current(delivery)
        if held is None:
            return False
        envelope = Envelope(deliveries=held.delivery_count, handed_back=held.envelope.handed_back + 1)
        await self.link.publish("", self.names.runs, held.message.body, codec.properties(held.run, envelope))
        return self._settle(delivery, held)

    async def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the run to ``P.dead`` with ``reason``; it is not delivered again."""
        held = self._current(delivery)
        if held is None:
            return False
        now = codec.epoch_ms(self.clock.now())
        props = codec.properties(held.run, Envelope(deliveries=held.delivery_count), **{
            codec.REASON: reason, codec.DEAD_AT: now})
        await self.link.publish("", self.names.dead, held.message.body, props)
        return self._settle(delivery, held)

    def _settle(self, delivery: Delivery, held: _Held) -> bool:
        """Ack the held message, if its channel is still the one it came on."""
        if self._held.get(delivery.token) is not held or held.message.generation != self.link.generation:
            self._held.pop(delivery.token, None)
            return False
        del self._held[delivery.token]
        return self._basic_ack(held.message)

    def _basic_ack(self, message: _Message) -> bool:
        if message.generation != self.link.generation or not self.link.up:
            return False
        self.link.channel.basic_ack(message.tag)
        return True

    async def _hand_back_unstarted(self, message: _Message) -> None:
        """A message pushed here that the engine never took: a copy with the same counts, then the ack
        (requeueing it would count a delivery that never happened)."""
        envelope, redelivered = codec.envelope_of(message.properties)
        envelope = attrs.evolve(envelope, deliveries=envelope.deliveries + redelivered)
        properties = message.properties
        headers = {k: v for k, v in (properties.headers or {}).items() if not k.startswith("x-")}
        headers[codec.DELIVERIES] = envelope.deliveries
        properties.headers = headers
        await self.link.publish("", self.names.runs, message.body, properties)
        self._basic_ack(message)

    async def _stop_consumer(self) -> None:
        tag, self._consumer_tag = self._consumer_tag, None
        if tag is not None:
            await self.link.call(lambda ch, cb: ch.basic_cancel(tag, callback=cb))

    # -- inspection -----------------------------------------------------------------------------------

    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first. AMQP cannot browse a queue: this reads up to
        ``DEAD_LETTER_SCAN`` of them on a channel of its own and closes it, which puts them back."""
        entries: list[dict[str, Any]] = []
        async with self.link.side_channel() as channel:
            while len(entries) < DEAD_LETTER_SCAN:
                got = await self.link.get(self.names.dead, channel)
                if got is None:
                    break
                _method, properties, body = got
                entries.append(codec.dead_letter_entry(body, properties))
        entries.reverse()
        return entries[:limit]

    async def depth(self) -> int:
        """Runs ready and delayed in the server, and those leased to this process."""
        counts = await self.queue_counts()
        return counts["ready"] + counts["delayed"] + counts["leased"]

    async def queue_counts(self) -> dict[str, int]:
        """Runs ready, delayed (in the ladder), leased and dead-lettered. ``leased`` counts this
        process's leases only: AMQP does not report other consumers' unacked messages."""
        names = self.names
        counts: dict[str, int] = {}
        async with self.link.side_channel() as channel:
            for queue in names.all_queues():
                frame = await self.link.call(
                    lambda ch, cb, q=queue: ch.queue_declare(q, passive=True, callback=cb), channel)
                counts[queue] = frame.method.message_count
        delayed = sum(counts[names.delay(level)] for level in range(LEVELS))
        return {"ready": counts[names.runs], "delayed": delayed, "leased": len(self._held) + len(self._pushed),
                "dead": counts[names.dead]}

    @property
    def available(self) -> bool:
        """Whether the connection is up right now."""
        return self.link.up


def _from_epoch_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)
