"""One fire in one script: claim the due fire, count it towards max_instances, queue its run.

The store and the broker of this backend share a server, so the three steps a scheduler
takes for each fire are one atomic script here: a scheduler that dies midway leaves either
nothing done (another scheduler fires it) or everything done, never a claimed fire without
its run or an active fire that blocks its task.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sts_core.interfaces import DueFire
from sts_core.model import Run
from sts_redis.broker_scripts import PUSH
from sts_redis.connection import translated
from sts_redis.timeutil import to_us

# ARGV: prefix, task name, fire id, limit, now (us), fire expiry (us), run id, run json, at (us)
# or '', then (optional) expected due (us) and next due (us) or ''.
# Returns 0: the claim was lost; 1: queued; 2: claimed, but max_instances fires are active.
CLAIM_AND_ENQUEUE = PUSH + """
local p, name = ARGV[1], ARGV[2]
if ARGV[10] then
  local due = p .. ':due'
  local score = redis.call('ZSCORE', due, name)
  if not score or tonumber(score) ~= tonumber(ARGV[10]) then return 0 end
  if ARGV[11] == '' then redis.call('ZREM', due, name) else redis.call('ZADD', due, ARGV[11], name) end
end
local active = p .. ':active:' .. name
redis.call('ZREMRANGEBYSCORE', active, '-inf', ARGV[5])
if not redis.call('ZSCORE', active, ARGV[3]) and redis.call('ZCARD', active) >= tonumber(ARGV[4]) then
  return 2
end
redis.call('ZADD', active, ARGV[6], ARGV[3])
push(p, ARGV[7], ARGV[8], ARGV[9])
return 1
"""

_OUTCOMES = {0: "lost", 1: "queued", 2: "limited"}


class AtomicDispatch:
    """``claim_and_enqueue`` for the engine, over the store's and broker's shared connection."""

    def __init__(self, store: Any, broker: Any) -> None:
        self._store = store
        self._broker = broker
        self._script: Any = None
        self._client: Any = None

    async def __call__(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None
    ) -> str:
        """Claim (if ``claim``), admit under ``limit`` and queue ``run``: "lost", "queued" or "limited"."""
        connection = self._store.connection
        with translated(connection.where):
            client = connection.client
            if self._client is not client:  # registered per connection: a reopened backend has a new one
                self._client, self._script = client, client.register_script(CLAIM_AND_ENQUEUE)
            now = to_us(self._store.clock.now())
            payload = json.dumps(run.to_dict(), separators=(",", ":"), ensure_ascii=False)
            args: list[Any] = [
                self._store.prefix, run.task_name, run.fire_id, limit, now, now + self._store.fire_ttl_us,
                run.id, payload, "" if at is None else to_us(at),
            ]
            if claim is not None:
                fire, following = claim
                args += [to_us(fire.scheduled_for), "" if following is None else to_us(following)]
            return _OUTCOMES[int(await self._script(args=args))]
