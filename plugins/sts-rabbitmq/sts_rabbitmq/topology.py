"""The queues and exchanges the broker uses, and how a delay becomes a route through them.

Every name starts with the configured prefix ``P`` (default ``sts``):

* ``P.runs`` -- the quorum queue workers consume: runs that are due.
* ``P.dead`` -- the quorum queue of dead-lettered runs (poison), kept for inspection.
* ``P.deliver`` -- a fanout exchange into ``P.runs``.
* ``P.delay.0`` ... ``P.delay.31`` -- the delay ladder: for each level ``L`` a topic exchange and
  a quorum queue whose messages live ``2**L`` ms and are then dead-lettered to the level below
  (level 0 to ``P.deliver``).

Stock RabbitMQ has no per-message delay (the delayed-message exchange is a separate plugin that
Debian does not ship), and a single TTL queue with per-message expiry holds every message behind
the one at its head. The ladder avoids both: a delay of ``d`` ms is written in binary in the
routing key, one word per level (``0.0. … .1.1.1.1.1.0.1.0.0.0`` for 1,000 ms). Level ``L``'s
exchange sends a message whose bit ``L`` is 1 into its queue, to wait ``2**L`` ms, and one whose
bit is 0 straight on to the next level down. A message waits once per 1 bit, in queues where
every message has the same TTL, so none waits behind another, and the whole route is taken by
the server: nothing depends on a worker being up. 32 levels cover delays up to 49 days; a run
due later carries its due time and is sent round again when it arrives early.
"""

from __future__ import annotations

import attrs

#: Levels of the delay ladder: delays up to 2**LEVELS - 1 ms (about 49.7 days).
LEVELS = 32
MAX_DELAY_MS = (1 << LEVELS) - 1

#: Arguments every queue of ours is declared with: replicated, durable quorum queues.
QUORUM = {"x-queue-type": "quorum"}


@attrs.frozen
class Names:
    """The names of one deployment's queues and exchanges, from its prefix."""

    prefix: str

    @property
    def runs(self) -> str:
        return f"{self.prefix}.runs"

    @property
    def dead(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def deliver(self) -> str:
        return f"{self.prefix}.deliver"

    def delay(self, level: int) -> str:
        """The exchange and the queue of one ladder level (they share the name)."""
        return f"{self.prefix}.delay.{level}"

    def below(self, level: int) -> str:
        """Where a message goes after ``level``: the next level's exchange, or delivery."""
        return self.delay(level - 1) if level > 0 else self.deliver

    def all_queues(self) -> list[str]:
        return [self.runs, self.dead, *(self.delay(level) for level in range(LEVELS))]

    def all_exchanges(self) -> list[str]:
        return [self.deliver, *(self.delay(level) for level in range(LEVELS))]


def runs_queue_arguments(names: Names) -> dict[str, object]:
    """The runs queue. STS counts redeliveries and dead-letters poison runs itself; should the
    server ever drop a message for being returned too often (RabbitMQ 4's default delivery
    limit), it goes to the dead-letter queue rather than nowhere."""
    return {**QUORUM, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": names.dead}


def dead_queue_arguments(max_length: int) -> dict[str, object]:
    """The dead-letter queue: the newest ``max_length`` kept. Listing it returns every message to
    the queue, which counts as a redelivery: the limit is set far above any listing count (RabbitMQ
    4 would otherwise drop a message returned 20 times)."""
    return {**QUORUM, "x-max-length": max_length, "x-delivery-limit": 1_000_000_000}


def delay_queue_arguments(names: Names, level: int) -> dict[str, object]:
    """A ladder queue: messages expire after ``2**level`` ms into the level below, at least once
    (a message is removed only once the level below has it; that needs ``reject-publish``)."""
    return {
        **QUORUM,
        "x-message-ttl": 1 << level,
        "x-dead-letter-exchange": names.below(level),
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def level_pattern(level: int, bit: str) -> str:
    """The topic pattern matching routing keys whose bit ``level`` is ``bit``."""
    words = ["*"] * LEVELS
    words[LEVELS - 1 - level] = bit
    return ".".join(words)


def delay_route(delay_ms: int) -> tuple[int, str]:
    """The ladder level to publish a delay of ``delay_ms`` (1 to ``MAX_DELAY_MS``) to, and its
    routing key. The highest set bit's level is the entry: the levels above would pass it on."""
    if not 1 <= delay_ms <= MAX_DELAY_MS:
        raise ValueError(f"a delay must be 1 to {MAX_DELAY_MS} ms, got {delay_ms}")
    return delay_ms.bit_length() - 1, ".".join(format(delay_ms, f"0{LEVELS}b"))
