"""Lua for the store operations that must be atomic. ``ARGV[1]`` is always the key prefix.

Keys are built from the prefix inside the scripts (see the README's data layout), so this
backend needs one Redis server (or a primary with replicas), not a Redis Cluster.
"""

# ARGV: prefix, replace (0/1), then name, json pairs. Returns {0, name} if a name exists and
# replace is 0 (nothing stored), else {1, version...}.
PUT_TASKS = """
local p = ARGV[1]
local tasks = p .. ':tasks'
if ARGV[2] == '0' then
  for i = 3, #ARGV, 2 do
    if redis.call('HEXISTS', tasks, ARGV[i]) == 1 then return {0, ARGV[i]} end
  end
end
local out = {1}
for i = 3, #ARGV, 2 do
  local name, json = ARGV[i], ARGV[i + 1]
  local v = redis.call('HINCRBY', p .. ':task_seq', name, 1)
  redis.call('HSET', p .. ':task_versions:' .. name, v, json)
  redis.call('HSET', tasks, name, v .. ':' .. json)
  out[#out + 1] = v
end
for i = 3, #ARGV, 2 do redis.call('PUBLISH', p .. ':changes', 'task:' .. ARGV[i]) end
return out
"""

# ARGV: prefix, name. Returns 1 if the task existed.
DELETE_TASK = """
local p, name = ARGV[1], ARGV[2]
local existed = redis.call('HDEL', p .. ':tasks', name)
redis.call('DEL', p .. ':task_versions:' .. name, p .. ':parents:' .. name, p .. ':parents_done:' .. name,
  p .. ':active:' .. name)
redis.call('ZREM', p .. ':due', name)
redis.call('PUBLISH', p .. ':changes', 'task:' .. name)
return existed
"""

# ARGV: prefix, name, microseconds. Tells other schedulers when the task is now the earliest.
SET_NEXT_FIRE = """
local p, name = ARGV[1], ARGV[2]
local due = p .. ':due'
redis.call('ZADD', due, ARGV[3], name)
local first = redis.call('ZRANGE', due, 0, 0)
if first[1] == name then redis.call('PUBLISH', p .. ':changes', 'due:' .. name) end
return 1
"""

# A Lua function: compare and set the due time of task ``name`` from ``expected`` to ``following``
# ('' clears it); 1 if it was ``expected``. CLAIM_FIRE's ARGV: prefix, name, expected, following.
CLAIM = """
local function claim(p, name, expected, following)
  local due = p .. ':due'
  local score = redis.call('ZSCORE', due, name)
  if not score or tonumber(score) ~= tonumber(expected) then return 0 end
  if following == '' then redis.call('ZREM', due, name) else redis.call('ZADD', due, following, name) end
  return 1
end
"""
CLAIM_FIRE = CLAIM + "return claim(ARGV[1], ARGV[2], ARGV[3], ARGV[4])"

# A Lua function the scripts that record runs share: insert or update run ``id`` of ``task``;
# a new run applies retention (``max`` runs per task, 0: no limit; runs first recorded before
# ``cutoff`` us, '': no limit). Returns 1 for a new record, 0 for an update.
RECORD = """
local function record(p, id, task, json, now, max, cutoff)
  local runs = p .. ':runs'
  if redis.call('HSET', runs, id, json) == 0 then return 0 end
  local order, times = p .. ':run_order', p .. ':run_times'
  local seq = redis.call('INCR', p .. ':run_seq')
  local mine = p .. ':task_runs:' .. task
  redis.call('ZADD', order, seq, id)
  redis.call('ZADD', mine, seq, id)
  if cutoff ~= '' then redis.call('ZADD', times, now, id) end
  max = tonumber(max)
  if max > 0 then
    -- at most 1000 per call (unpack's limit), so lowering the limit trims over several records
    local extra = math.min(redis.call('ZCARD', mine) - max, 1000)
    if extra > 0 then
      local old = redis.call('ZRANGE', mine, 0, extra - 1)
      redis.call('ZREMRANGEBYRANK', mine, 0, extra - 1)
      redis.call('HDEL', runs, unpack(old))
      redis.call('ZREM', order, unpack(old))
      redis.call('ZREM', times, unpack(old))
    end
  end
  if cutoff ~= '' then
    local old = redis.call('ZRANGEBYSCORE', times, '-inf', '(' .. cutoff, 'LIMIT', 0, 1000)
    for _, oid in ipairs(old) do
      local data = redis.call('HGET', runs, oid)
      if data then
        local ok, run = pcall(cjson.decode, data)
        if ok and type(run) == 'table' and run.task_name then
          redis.call('ZREM', p .. ':task_runs:' .. run.task_name, oid)
        end
        redis.call('HDEL', runs, oid)
      end
      redis.call('ZREM', order, oid)
      redis.call('ZREM', times, oid)
    end
  end
  return 1
end
"""

# ARGV: prefix, run id, task name, json, now (us), max runs per task, cutoff (us) or ''.
RECORD_RUN = RECORD + "return record(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])"

# As RECORD_RUN, unless run id is recorded: then return its record and change nothing.
START_RUN = RECORD + """
local existing = redis.call('HGET', ARGV[1] .. ':runs', ARGV[2])
if existing then return existing end
record(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return false
"""

# ARGV: prefix, child, parent, token (the parent's run id), required parents... Returns 1 (and
# resets) once all succeeded; 1 again, changing nothing, for the token that completed the set.
PARENT_SUCCEEDED = """
local key, completed = ARGV[1] .. ':parents:' .. ARGV[2], ARGV[1] .. ':parents_done:' .. ARGV[2]
if redis.call('GET', completed) == ARGV[4] then return 1 end
redis.call('SADD', key, ARGV[3])
for i = 5, #ARGV do
  if redis.call('SISMEMBER', key, ARGV[i]) == 0 then return 0 end
end
redis.call('DEL', key)
redis.call('SET', completed, ARGV[4], 'EX', 86400)
return 1
"""

# A Lua function: count ``fire`` as active for ``name`` (until ``expiry`` us, dropping expired
# entries) unless ``limit`` fires already are; 1 if it now counts. BEGIN_FIRE's ARGV: prefix,
# name, fire id, limit, now (us), expiry (us).
ADMIT = """
local function admit(p, name, fire, limit, now, expiry)
  local key = p .. ':active:' .. name
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, fire) and redis.call('ZCARD', key) >= tonumber(limit) then return 0 end
  redis.call('ZADD', key, expiry, fire)
  return 1
end
"""
BEGIN_FIRE = ADMIT + "return admit(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])"

# The outbox, for a broker outside Redis (a run is staged here in the step that claims its fire,
# published, then unstaged; a scheduler that dies in between leaves it staged for another).
# STAGE_FIRE's ARGV: prefix, name, fire id, limit, now (us), expiry (us), run id, entry json,
# then (optional) the claim: expected due time (us), following ('' clears). Returns 0 (claim
# lost), 1 (staged) or 2 (max_instances reached).
STAGE_FIRE = CLAIM + ADMIT + """
local p, name = ARGV[1], ARGV[2]
if ARGV[9] and claim(p, name, ARGV[9], ARGV[10]) == 0 then return 0 end
if admit(p, name, ARGV[3], ARGV[4], ARGV[5], ARGV[6]) == 0 then return 2 end
redis.call('HSET', p .. ':outbox', ARGV[7], ARGV[8])
redis.call('ZADD', p .. ':outbox_times', ARGV[5], ARGV[7])
return 1
"""

# ARGV: prefix, run id.
UNSTAGE = """
redis.call('HDEL', ARGV[1] .. ':outbox', ARGV[2])
redis.call('ZREM', ARGV[1] .. ':outbox_times', ARGV[2])
return 1
"""

# ARGV: prefix, cutoff (us), now (us), limit. Entries staged at or before the cutoff, each
# marked as taken now, so another scheduler sweeping within the grace time leaves them alone.
TAKE_STRANDED = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p .. ':outbox_times', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', p .. ':outbox', id)
  if entry then
    redis.call('ZADD', p .. ':outbox_times', ARGV[3], id)
    out[#out + 1] = entry
  else
    redis.call('ZREM', p .. ':outbox_times', id)
  end
end
return out
"""

