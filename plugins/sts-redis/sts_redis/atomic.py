"""The engine's multi-step moments, each in one script: this backend's store and broker share a
server, so steps the kernel would otherwise take one after the other can be made atomic.

- ``claim_and_enqueue``: claim a due fire, count it towards ``max_instances``, queue its run.
  A scheduler that dies midway leaves either nothing done (another scheduler fires it) or
  everything, never a claimed fire without its run or an active fire that blocks its task.
- ``record_and_ack``: if the worker's lease is still current, record the run's outcome, forget
  the queued message, queue the retry and end the fire; otherwise do nothing, so a stale
  worker's result never overwrites anything (the engine then records it as a duplicate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sts.plugin import Delivery, DueFire, Run
from sts_redis.broker_scripts import FORGET, PUSH
from sts_redis.codec import run_json, to_us
from sts_redis.connection import translated
from sts_redis.store_scripts import ADMIT, CLAIM, RECORD

# ARGV: prefix, task name, fire id, limit, now (us), fire expiry (us), run id, run json, at (us)
# or '', expected due (us) or '' (no claim), next due (us) or '', the task version the run is of
# or '' (unchecked). Returns 0: the claim was lost; 1: queued; 2: claimed, but max_instances fires
# are active; 3: the task is no longer stored; 4: another version of it is stored now.
CLAIM_AND_ENQUEUE = PUSH + CLAIM + ADMIT + """
local p, name = ARGV[1], ARGV[2]
if ARGV[12] ~= '' then
  local stored = redis.call('HGET', p .. ':tasks', name)
  if not stored then return 3 end
  if string.match(stored, '^(%d+):') ~= ARGV[12] then return 4 end
end
if ARGV[10] ~= '' and claim(p, name, ARGV[10], ARGV[11]) == 0 then return 0 end
if admit(p, name, ARGV[3], ARGV[4], ARGV[5], ARGV[6]) == 0 then return 2 end
push(p, ARGV[7], ARGV[8], ARGV[9])
return 1
"""

# ARGV: prefix, message id, token, run id, task name, run json, now (us), max runs per task,
# cutoff (us) or '', fire id to end or '', ack ('1' or '0'), then (optional) next id, next json,
# next at or ''. Returns 0 (nothing done) when the token is not current, else 1; also 1 when
# this very step already ran (its reply was lost and it is asked again).
RECORD_AND_ACK = PUSH + FORGET + RECORD + """
local p, msg = ARGV[1], ARGV[2]
if redis.call('HGET', p .. ':q:token', msg) ~= ARGV[3] then
  if ARGV[11] == '1' and redis.call('HGET', p .. ':runs', ARGV[4]) == ARGV[6] then return 1 end
  return 0
end
record(p, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
if ARGV[11] == '1' then forget(p, msg) end
if ARGV[10] ~= '' then redis.call('ZREM', p .. ':active:' .. ARGV[5], ARGV[10]) end
if ARGV[12] then push(p, ARGV[12], ARGV[13], ARGV[14]) end
return 1
"""

_CLAIM_OUTCOMES = {0: "lost", 1: "queued", 2: "limited", 3: "gone", 4: "changed"}



class AtomicSteps:
    """``claim_and_enqueue`` and ``record_and_ack`` over the store's and broker's shared connection."""

    def __init__(self, store: Any) -> None:
        self._store = store

    async def _run(self, source: str, args: list[Any]) -> int:
        return int(await self._store.connection.run_script(source, args))

    async def claim_and_enqueue(
        self, claim: tuple[DueFire, datetime | None] | None, run: Run, limit: int, at: datetime | None,
        *, version: int | None = None,
    ) -> str:
        """Claim (if ``claim``), admit under ``limit`` and queue ``run``: "lost", "queued" or "limited";
        with ``version``, first check the task is still stored in that version ("gone", "changed")."""
        store = self._store
        with translated(store.connection.where):
            now = to_us(store.clock.now())
            args: list[Any] = [
                store.prefix, run.task_name, run.fire_id, limit, now, now + store.fire_ttl_us,
                run.id, run_json(run), "" if at is None else to_us(at),
            ]
            if claim is not None:
                fire, following = claim
                args += [to_us(fire.scheduled_for), "" if following is None else to_us(following)]
            else:
                args += ["", ""]
            args.append("" if version is None else str(version))
            return _CLAIM_OUTCOMES[await self._run(CLAIM_AND_ENQUEUE, args)]

    async def record_and_ack(
        self, run: Run, delivery: Delivery, then: Run | None, at: datetime | None, end_fire: bool, ack: bool = True
    ) -> bool:
        """If ``delivery``'s lease is current: record ``run``, ack (if ``ack``), queue ``then``,
        end the fire (if ``end_fire``), all at once, and return True; else do nothing and return
        False. Asking again after a lost reply gives True again."""
        store = self._store
        with translated(store.connection.where):
            now = to_us(store.clock.now())
            args: list[Any] = [
                store.prefix, delivery.run.id, delivery.token, run.id, run.task_name, run_json(run), now,
                store.max_runs, "" if store.max_age_us is None else now - store.max_age_us,
                (run.fire_id or "") if end_fire else "",
                "1" if ack else "0",
            ]
            if then is not None:
                args += [then.id, run_json(then), "" if at is None else to_us(at)]
            return bool(await self._run(RECORD_AND_ACK, args))
