"""``RedisBroker``: leased delivery of runs through Redis to any number of worker processes.

Why leases in sorted sets and not Redis Streams consumer groups: a stream's pending entries
expire by Redis's own idle clock (XAUTOCLAIM's min-idle-time), which neither fences a stale
worker (XACK accepts any consumer's ack) nor follows STS's injectable clock, so lease expiry
could not be tested without sleeping. Here each delivery gets a token from one counter; ack,
extend, release and dead-letter succeed only with the current token, and every deadline
(delayed runs, lease ends) is a score taken from the STS clock. Delayed runs need a sorted
set in either design.

Consumers that find nothing ready wait until the earliest delayed run or lease end, or until
a notice on the ``<prefix>:queue`` channel (a run became ready in any process), or at most
``poll_interval`` seconds in case a notice was lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

from sts.plugin import Delivery, Run
from sts_redis import broker_scripts as lua
from sts_redis.codec import run_json, to_us
from sts_redis.connection import RedisConnection, translate_errors

log = logging.getLogger("sts.redis")


class _Undeliverable(Exception):
    """A queued message that is not a run."""


class RedisBroker:
    """A ``sts_core.interfaces.Broker`` in Redis, with leases of ``lease_time`` seconds.

    ``max_dead_letters`` bounds the dead-letter list (the oldest entries go first).
    """

    #: Queued runs live in Redis: nothing is lost when this process stops.
    durable = True
    #: Each run is queued once (a repeated script finds it queued) and its deliveries counted exactly.
    may_duplicate = False
    counts_may_skip = False

    def __init__(
        self,
        connection: RedisConnection,
        clock: Any,
        *,
        prefix: str,
        lease_time: float = 60.0,
        max_dead_letters: int = 10_000,
        poll_interval: float = 5.0,
    ) -> None:
        if lease_time <= 0:
            raise ValueError(f"lease_time: expected a duration greater than zero, got {lease_time!r}")
        self.connection = connection
        self._clock = clock
        self._p = prefix
        self._lease_time = lease_time
        self._lease_us = int(lease_time * 1_000_000)
        self._max_dead = max_dead_letters
        self._poll = poll_interval
        self._waiters: set[Any] = set()
        self._closed = False
        connection.subscribe(f"{prefix}:queue", self._notice)

    async def _call(self, name: str, *args: Any) -> Any:
        return await self.connection.run_script(getattr(lua, name), [self._p, *args])

    async def open(self) -> None:
        """Connect (shared with the store) and listen for queue notices."""
        self._closed = False
        await self.connection.open()
        await self.connection.subscribed()

    async def close(self) -> None:
        """Wake waiting consumers with None and disconnect once the store has closed too."""
        self._closed = True
        self._wake_all()
        await self.connection.close()

    def _notice(self, message: str | None) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for event in self._waiters:
            event.set()

    # -- producing ----------------------------------------------------------------------------

    @translate_errors
    async def enqueue(self, run: Run, at: datetime | None = None) -> None:
        """Queue a snapshot of ``run`` now, or for delivery not before ``at``."""
        if at is not None and at.tzinfo is None:
            raise ValueError(f"enqueue of run {run.id!r}: expected a timezone-aware datetime for at, got {at!r}")
        await self._call("ENQUEUE", run.id, run_json(run), "" if at is None else to_us(at))
        self._wake_all()

    # -- consuming ----------------------------------------------------------------------------

    async def consume(self, timeout: float | None) -> Delivery | None:
        """The next ready run under a new lease, or None after ``timeout`` seconds (None: wait on)."""
        deliveries = await self.consume_many(1, timeout)
        return deliveries[0] if deliveries else None

    async def consume_many(self, limit: int, timeout: float | None) -> list[Delivery]:
        """Up to ``limit`` ready runs in one round trip, each under its own lease; an empty list
        after ``timeout`` seconds (None: wait on)."""
        clock = self._clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        while not self._closed:
            event = asyncio.Event()
            self._waiters.add(event)  # before looking, so a notice meanwhile is not missed
            try:
                # Times count from before the round trip: a clock that moved meanwhile shortens the wait.
                looked_at = clock.monotonic()
                deliveries, wake_in = await self._take(max(limit, 1))
                if deliveries:
                    return deliveries
                wake_at = looked_at + wake_in
                if deadline is not None:
                    if deadline - clock.monotonic() <= 1e-6:
                        return []
                    wake_at = min(wake_at, deadline)
                await clock.wait(event, max(wake_at - clock.monotonic(), 0.0))
            finally:
                self._waiters.discard(event)
        return []

    @translate_errors
    async def _take(self, limit: int) -> tuple[list[Delivery], float]:
        """Lease up to ``limit`` ready runs (dead-lettering undeliverable messages), or say how
        long to wait for the next delayed run or lease end."""
        while True:
            now_us = to_us(self._clock.now())
            strays, taken, next_delayed, next_lease_end = await self._call("TAKE", now_us, self._lease_us, limit)
            for stray in strays:
                await self._dead_letter(stray, "", "no message is stored under this run id", None)
            deliveries = []
            until = self._clock.monotonic() + self._lease_time
            for i in range(0, len(taken), 5):
                run_id, payload, count, token, handed_back = taken[i : i + 5]
                try:
                    run = _decode_run(payload)
                except _Undeliverable as exc:
                    await self._dead_letter(run_id, str(token), str(exc), payload)
                    continue
                deliveries.append(Delivery(run, int(token), until, int(count), int(handed_back)))
            if deliveries:
                return deliveries, 0.0
            if taken:
                continue  # everything taken was undeliverable: look again
            wake_in = self._poll
            for score in (next_delayed, next_lease_end):
                if score:
                    wake_in = min(wake_in, (float(score) - now_us) / 1_000_000)
            return [], wake_in

    async def _dead_letter(self, run_id: bytes | str, token: str, reason: str, payload: Any) -> bool:
        run_text = _text(run_id)
        if isinstance(payload, bytes):
            try:
                payload = json.loads(payload)
            except ValueError:
                payload = payload.decode("utf-8", "backslashreplace")
        entry = {"id": run_text, "reason": reason, "payload": payload, "at": self._clock.now().isoformat()}
        moved = bool(await self._call("DEAD_LETTER", run_id, token, json.dumps(entry), self._max_dead))
        if moved and token:
            log.error("dead-lettered queued message %r: %s", run_text, reason)
        elif moved:
            log.error("dead-lettered a queue entry %r: %s", run_text, reason)
        return moved

    # -- settling -----------------------------------------------------------------------------

    @translate_errors
    async def extend(self, delivery: Delivery) -> bool:
        """Renew the lease for ``lease_time`` from now; False if the run went to another worker."""
        now_us = to_us(self._clock.now())
        if not await self._call("EXTEND", delivery.run.id, delivery.token, now_us, self._lease_us):
            return False
        delivery.lease_until = self._clock.monotonic() + self._lease_time
        return True

    @translate_errors
    async def ack(self, delivery: Delivery, then: Run | None = None, at: datetime | None = None) -> bool:
        """Forget the run and queue ``then`` in the same script; False (nothing queued) if the
        token is stale (the run went to another worker)."""
        if then is None:
            return bool(await self._call("ACK", delivery.run.id, delivery.token))
        following = "" if at is None else to_us(at)
        return bool(await self._call("ACK", delivery.run.id, delivery.token, then.id, run_json(then), following))

    @translate_errors
    async def release(self, delivery: Delivery) -> bool:
        """Put the run back at the front of the ready list for another worker."""
        return bool(await self._call("RELEASE", delivery.run.id, delivery.token))

    @translate_errors
    async def dead_letter(self, delivery: Delivery, reason: str) -> bool:
        """Move the run to the dead-letter list with ``reason``."""
        return await self._dead_letter(delivery.run.id, str(delivery.token), reason, delivery.run.to_dict())

    @translate_errors
    async def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest dead letters first."""
        entries = await self.connection.client.lrange(f"{self._p}:q:dead", 0, max(limit, 1) - 1)
        return [json.loads(entry) for entry in entries][:limit]

    @translate_errors
    async def depth(self) -> int:
        """Runs ready, delayed, and delivered but not yet acked."""
        counts = await self.queue_counts()
        return counts["ready"] + counts["delayed"] + counts["leased"]

    async def queue_counts(self) -> dict[str, int]:
        """Runs ready, delayed, leased (delivered, not yet acked) and dead-lettered, in one round trip."""
        client = self.connection.client
        async with client.pipeline(transaction=False) as pipe:
            pipe.llen(f"{self._p}:q:ready")
            pipe.zcard(f"{self._p}:q:delayed")
            pipe.zcard(f"{self._p}:q:leases")
            pipe.llen(f"{self._p}:q:dead")
            ready, delayed, leased, dead = await pipe.execute()
        return {"ready": ready, "delayed": delayed, "leased": leased, "dead": dead}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _decode_run(payload: bytes) -> Run:
    """The run in a queued message; ``_Undeliverable`` says why there is none (never unpickles)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise _Undeliverable("the message is not UTF-8 JSON (binary data such as a pickle is never loaded)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise _Undeliverable(f"the message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _Undeliverable(f"the message is JSON but not a run object: {text[:80]!r}")
    try:
        return Run.from_dict(data)
    except KeyError as exc:
        raise _Undeliverable(f"the message is not a valid run: it has no {exc} field") from None
    except (TypeError, ValueError) as exc:
        raise _Undeliverable(f"the message is not a valid run: {exc}") from None
