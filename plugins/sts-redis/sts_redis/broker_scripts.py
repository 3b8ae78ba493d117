"""Lua for the broker: every state change of a queued run is one atomic script.

A run waits in exactly one of ``q:ready`` (LIST of run ids, delivered from the left),
``q:delayed`` (ZSET, not before its score) or ``q:leases`` (ZSET, leased to a worker until
its score); its JSON is in the ``q:msg`` HASH, its delivery count in ``q:count`` and the
token of its current lease in ``q:token``. ``ARGV[1]`` is always the key prefix.
"""

# A Lua function the scripts that enqueue share: queue run ``id`` (JSON ``json``) now, or (``at``
# not '') not before ``at`` us, and wake idle consumers of other processes. A run already
# queued is left as it is, so a step repeated after a lost reply queues nothing twice.
PUSH = """
local function push(p, id, json, at)
  if redis.call('HSETNX', p .. ':q:msg', id, json) == 0 then return end  -- queued already
  if at == '' then
    if redis.call('RPUSH', p .. ':q:ready', id) == 1 then redis.call('PUBLISH', p .. ':queue', 'ready') end
  else
    redis.call('ZADD', p .. ':q:delayed', at, id)
    if redis.call('ZRANGE', p .. ':q:delayed', 0, 0)[1] == id then redis.call('PUBLISH', p .. ':queue', 'delayed') end
  end
end
"""

# A Lua function: forget queued run ``id`` (acked or dead-lettered), leaving nothing behind.
FORGET = """
local function forget(p, id)
  redis.call('ZREM', p .. ':q:leases', id)
  redis.call('HDEL', p .. ':q:msg', id)
  redis.call('HDEL', p .. ':q:token', id)
  redis.call('HDEL', p .. ':q:count', id)
  redis.call('HDEL', p .. ':q:handed', id)
end
"""

# ARGV: prefix, id, json, at (us) or '' for now.
ENQUEUE = PUSH + "push(ARGV[1], ARGV[2], ARGV[3], ARGV[4]) return 1"

# ARGV: prefix, now (us), lease (us), limit. Moves due delayed runs to the back of the ready list
# and runs whose lease ended to its front (their old token no longer acks), then leases up to
# ``limit`` ready runs. Returns {strays, {id, json, count, token, ...}, next delayed score, next
# lease end}; strays are ready ids with no message stored; the scores are false when absent.
TAKE = """
local p, now, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[4])
local ready, delayed, leases = p .. ':q:ready', p .. ':q:delayed', p .. ':q:leases'
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)
if #due > 0 then
  redis.call('ZREM', delayed, unpack(due))
  redis.call('RPUSH', ready, unpack(due))
end
local ended = redis.call('ZRANGEBYSCORE', leases, '-inf', now, 'LIMIT', 0, 1000)
if #ended > 0 then
  redis.call('ZREM', leases, unpack(ended))
  redis.call('HDEL', p .. ':q:token', unpack(ended))
  for i = #ended, 1, -1 do redis.call('LPUSH', ready, ended[i]) end
end
local strays, taken = {}, {}
local until_ = now + tonumber(ARGV[3])
while #taken < 5 * limit and #strays < 100 do
  local id = redis.call('LPOP', ready)
  if not id then break end
  local json = redis.call('HGET', p .. ':q:msg', id)
  if json then
    local count = redis.call('HINCRBY', p .. ':q:count', id, 1)
    local token = redis.call('INCR', p .. ':q:seq')
    redis.call('HSET', p .. ':q:token', id, token)
    redis.call('ZADD', leases, until_, id)
    taken[#taken + 1] = id
    taken[#taken + 1] = json
    taken[#taken + 1] = count
    taken[#taken + 1] = token
    taken[#taken + 1] = redis.call('HGET', p .. ':q:handed', id) or 0
  else
    strays[#strays + 1] = id
  end
end
local nd = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local nl = redis.call('ZRANGE', leases, 0, 0, 'WITHSCORES')
return {strays, taken, nd[2] or false, nl[2] or false}
"""

# ARGV: prefix, id, token, now (us), lease (us). Renews the lease of the current token holder.
EXTEND = """
local p, id = ARGV[1], ARGV[2]
if redis.call('HGET', p .. ':q:token', id) ~= ARGV[3] then return 0 end
redis.call('ZADD', p .. ':q:leases', tonumber(ARGV[4]) + tonumber(ARGV[5]), id)
return 1
"""

# ARGV: prefix, id, token[, next id, next json, next at (us) or '']. The outcome is recorded:
# forget the run and, in the same step, queue its next attempt.
ACK = PUSH + FORGET + """
local p, id = ARGV[1], ARGV[2]
if redis.call('HGET', p .. ':q:token', id) ~= ARGV[3] then return 0 end
forget(p, id)
if ARGV[4] then push(p, ARGV[4], ARGV[5], ARGV[6]) end
return 1
"""

# ARGV: prefix, id, token. Hand the run back to the front of the ready list now (counted in q:handed).
RELEASE = """
local p, id = ARGV[1], ARGV[2]
if redis.call('HGET', p .. ':q:token', id) ~= ARGV[3] then return 0 end
redis.call('ZREM', p .. ':q:leases', id)
redis.call('HDEL', p .. ':q:token', id)
redis.call('HINCRBY', p .. ':q:handed', id, 1)
if redis.call('LPUSH', p .. ':q:ready', id) == 1 then redis.call('PUBLISH', p .. ':queue', 'ready') end
return 1
"""

# ARGV: prefix, id, token ('' for a run nobody holds), entry json, max entries kept.
DEAD_LETTER = FORGET + """
local p, id = ARGV[1], ARGV[2]
if ARGV[3] ~= '' and redis.call('HGET', p .. ':q:token', id) ~= ARGV[3] then return 0 end
forget(p, id)
redis.call('LPUSH', p .. ':q:dead', ARGV[4])
redis.call('LTRIM', p .. ':q:dead', 0, tonumber(ARGV[5]) - 1)
return 1
"""
