--[[
  Shared helpers for the task scripts (included by `--!include task_common`).

  Conventions every including script follows:
    ARGV[1]  piano key prefix (e.g. "piano"); piano keys are P .. ":" .. ...
    Task hashes are RQ job hashes at "rq:job:<id>"; queues "rq:queue:<origin>";
    RQ registries "rq:<kind>:<origin>".
  Keys are derived here from ids because a task graph touches tasks that the caller
  cannot know in advance (children released by a parent's completion).
]]
local P = ARGV[1]

local function job_key(id) return 'rq:job:' .. id end
local function pending_key(id) return P .. ':task:' .. id .. ':pending' end
local function children_key(id) return P .. ':task:' .. id .. ':children' end
local STATS = P .. ':stats'
local RUNNING = P .. ':running'
local WAKEUP = P .. ':wakeup'
local EVENTS = P .. ':events'
-- RQ's registries should never see our running tasks as abandoned: our own lease
-- sweep handles that, so their "started" score is pushed far into the future.
local FAR_FUTURE = 4102444800

-- The task state machine (docs/tasks.md): every state a task hash takes, the status
-- piano reads (`piano_status`, TaskStatus), the one RQ's tools read (`status`, RQ's
-- JobStatus), and for an ended task the RQ registry that lists it. `retry_wait` is a
-- queued task waiting out its retry delay in <prefix>:delayed: queued to piano,
-- scheduled to RQ. Only set_status (and status_fields, for a task's first HSET) writes
-- either field; tests/test_task_states.py holds this table against TaskStatus and the
-- scripts.
local STATES = {
  queued            = {piano = 'queued',            rq = 'queued'},
  retry_wait        = {piano = 'queued',            rq = 'scheduled'},
  deferred          = {piano = 'deferred',          rq = 'deferred'},
  running           = {piano = 'running',           rq = 'started'},
  completed         = {piano = 'completed',         rq = 'finished', registry = 'finished'},
  failed            = {piano = 'failed',            rq = 'failed',   registry = 'failed'},
  timed_out         = {piano = 'timed_out',         rq = 'failed',   registry = 'failed'},
  dependency_failed = {piano = 'dependency_failed', rq = 'failed',   registry = 'failed'},
  cancelled         = {piano = 'cancelled',         rq = 'canceled', registry = 'canceled'},
}
local TERMINAL = {}  -- piano statuses a task never leaves
for _, s in pairs(STATES) do
  if s.registry then TERMINAL[s.piano] = true end
end

-- The two status fields of `state`, for a larger HSET (a new task's first write).
local function status_fields(state)
  local s = STATES[state]
  return 'status', s.rq, 'piano_status', s.piano
end

-- Move the task at `jk` to `state`; more field, value pairs ride in the same HSET.
local function set_status(jk, state, ...)
  local s = STATES[state]
  redis.call('HSET', jk, 'status', s.rq, 'piano_status', s.piano, ...)
end

-- A task is this deployment's when its queue (origin) is one of the prefix's,
-- "<P>.<level>" (levels have no dots). Task hashes are RQ's, unprefixed, so task ids
-- are one namespace per Redis, and another deployment's task must be left alone.
local function owned(origin)
  if not origin then return false end
  local head = P .. '.'
  if string.sub(origin, 1, #head) == head then
    return not string.find(origin, '.', #head + 1, true)
  end
  -- A queue group of this deployment: <prefix>@<group>.<level> ('@' is in no prefix).
  local group_head = P .. '@'
  if string.sub(origin, 1, #group_head) ~= group_head then return false end
  local dot = string.find(origin, '.', #group_head + 1, true)
  return dot ~= nil and not string.find(origin, '.', dot + 1, true)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- RQ's utcformat ("%Y-%m-%dT%H:%M:%S.%fZ") from epoch milliseconds; Redis Lua has no os.date.
-- A script stamps every transition it makes with one time (a claim's started_at and
-- last_heartbeat, a finish's ended_at and its children's enqueued_at): the last one is
-- kept rather than computed again.
local iso_ms, iso_text = nil, nil
local function iso_of(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, (ms % 1000) * 1000)
end

local function iso(ms)
  if ms ~= iso_ms then iso_ms, iso_text = ms, iso_of(ms) end
  return iso_text
end

local function publish(event, id, fields)
  fields = fields or {}
  fields.e = event
  fields.id = id
  redis.call('PUBLISH', EVENTS, cjson.encode(fields))
end

-- Scheduling state shared with task_claim (see includes/sched_pick.lua, docs/scheduling.md).
local SCHED = P .. ':sched'

-- ROUND_ROBIN and FAIR_SHARE pick by module, so while one of them is the cluster's
-- policy every queued task is also listed under (queue, module). Entries are hints:
-- the claim drops any whose task is no longer queued.
local function sched_index(id, origin, module, at_front)
  if not module or redis.call('HGET', SCHED, 'indexed') ~= '1' then return end
  local sub = SCHED .. ':q:' .. origin .. ':' .. module
  if at_front then redis.call('LPUSH', sub, id) else redis.call('RPUSH', sub, id) end
  redis.call('ZADD', SCHED .. ':mods:' .. origin, 0, module)
end

-- A run ended (finish, timeout, release, sweep): free its module's cluster-wide running
-- slot. Idempotent: only a run the claim counted holds the piano_sched_slot field. A
-- module with nothing running leaves no field behind (readers take a missing one as 0):
-- a run over many agents' modules would otherwise keep a zero for each.
local function sched_unclaim(id)
  local jk = job_key(id)
  if redis.call('HDEL', jk, 'piano_sched_slot') == 1 then
    local module = redis.call('HGET', jk, 'piano_module') or '?'
    if redis.call('HINCRBY', SCHED .. ':running', module, -1) <= 0 then
      redis.call('HDEL', SCHED .. ':running', module)
    end
  end
end

local function wake(n)
  -- One token per newly runnable task; the cap keeps an unattended list small.
  for _ = 1, n do redis.call('RPUSH', WAKEUP, '1') end
  redis.call('LTRIM', WAKEUP, -1000, -1)
end

-- Put a (new or released) task on its priority queue.
local function push_queued(id, origin, ts, at_front)
  local jk = job_key(id)
  set_status(jk, 'queued', 'enqueued_at', iso(ts))
  -- Wait start for aging and wait metrics; a task given back keeps the wait it had.
  if at_front then redis.call('HSETNX', jk, 'piano_enq_ms', ts) else redis.call('HSET', jk, 'piano_enq_ms', ts) end
  redis.call('ZREM', 'rq:deferred:' .. origin, id)
  local qkey = 'rq:queue:' .. origin
  if at_front then redis.call('LPUSH', qkey, id) else redis.call('RPUSH', qkey, id) end
  redis.call('SADD', 'rq:queues', qkey)
  local module = redis.call('HGET', jk, 'piano_module')
  sched_index(id, origin, module, at_front)
  publish('queued', id, {module = module})
  wake(1)
end

-- Tasks that cannot start now (module not registered, or a worker cannot load it) are
-- set aside per queue and module, like a paused module's held tasks, so that they never
-- block the queue behind them: <P>:parked:<origin>:<module> (LIST, queue order) and the
-- index <P>:parked (SET of "<origin>:<module>"). Workers that can start the module take
-- them from there (task_claim). They stay `queued` and count in the backlog.
local PARKED = P .. ':parked'
local function parked_key(origin, module) return PARKED .. ':' .. origin .. ':' .. module end

local function park(id, origin, module, why, at_front)
  local jk = job_key(id)
  set_status(jk, 'queued', 'piano_wait_reason', why)
  local key = parked_key(origin, module)
  if at_front then redis.call('LPUSH', key, id) else redis.call('RPUSH', key, id) end
  redis.call('SADD', PARKED, origin .. ':' .. module)
end

-- Take a queued task off whatever list it waits on (not yet terminal: the caller sets that).
local function unlist_queued(id, origin, module, priority)
  redis.call('LREM', 'rq:queue:' .. origin, 1, id)
  if module then
    redis.call('LREM', P .. ':held:' .. module .. ':' .. (priority or ''), 1, id)
    local key = parked_key(origin, module)
    if redis.call('LREM', key, 1, id) == 1 and redis.call('EXISTS', key) == 0 then
      redis.call('SREM', PARKED, origin .. ':' .. module)
    end
  end
  redis.call('ZREM', P .. ':delayed', id)
end

-- The backlog (queued + deferred tasks) counted from where they wait, replacing the
-- running counter, which drifts when jobs leave through RQ (rq-dashboard's "empty
-- queue" deletes them). Work: one call per list, not per task.
local function recount_backlog(queue_keys, deferred_keys)
  local n = redis.call('ZCARD', P .. ':delayed')
  for _, k in ipairs(queue_keys) do n = n + redis.call('LLEN', k) end
  for _, k in ipairs(deferred_keys) do n = n + redis.call('ZCARD', k) end
  for _, m in ipairs(redis.call('SMEMBERS', P .. ':paused')) do
    for level = 1, #queue_keys do n = n + redis.call('LLEN', P .. ':held:' .. m .. ':' .. level) end
  end
  for _, entry in ipairs(redis.call('SMEMBERS', PARKED)) do n = n + redis.call('LLEN', PARKED .. ':' .. entry) end
  redis.call('HSET', STATS, 'backlog', n)
  return n
end

-- The result TTL a task ends with: its own (`piano_result_ttl`, from TaskSpec.result_ttl)
-- when it has a valid one, else `default` (the ending caller's PIANO_RESULT_TTL). The
-- field is read back from Redis: anything but whole seconds in range is ignored.
local MAX_TTL = 2147483647  -- MAX_TTL of piano_dist/arguments.py, which refuses more at submit
local function own_ttl(raw, default)
  local n = tonumber(raw)
  if n and n >= 0 and n <= MAX_TTL and n == math.floor(n) then return n end
  return default
end

-- A number read back from Redis, or nil unless it is one cjson can encode (not inf or nan).
local function finite(raw)
  local n = tonumber(raw)
  if n and n == n and n > -1e15 and n < 1e15 then return n end
  return nil
end

-- Record a terminal outcome on a task that is not running (deferred/queued/running alike).
-- `ttl`: the default result TTL; the task's own one wins (own_ttl).
local function set_terminal(id, status, error, ts, ttl)
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'origin', 'piano_status', 'piano_module', 'piano_attempts', 'group_id',
    'piano_result_ttl', 'started_at', 'worker_name', 'piano_model_ms', 'piano_model_calls')
  local origin, previous, module = f[1], f[2], f[3]
  ttl = own_ttl(f[6], ttl)
  set_status(jk, status, 'ended_at', iso(ts))
  if error then redis.call('HSET', jk, 'piano_error', error) end
  -- What only a waiting or running task needs goes: the record kept for the result TTL
  -- is its outcome (a long simulation keeps millions of them). RQ's `result_ttl` field
  -- still shows a task's own TTL.
  redis.call('HDEL', jk, 'piano_payload', 'piano_enq_ms', 'piano_retries_left', 'piano_retry_delay',
    'piano_max_attempts', 'piano_keep_result', 'last_heartbeat', 'piano_result_ttl')
  if previous == 'queued' or previous == 'deferred' then redis.call('HINCRBY', STATS, 'backlog', -1) end
  if previous == 'running' then
    sched_unclaim(id)
    redis.call('ZREM', RUNNING, id)
    redis.call('ZREM', 'rq:wip:' .. origin, id .. ':' .. (f[4] or '0'))
  end
  redis.call('ZREM', 'rq:deferred:' .. origin, id)
  if ttl > 0 then
    -- Scored by when the record expires, as RQ does; the sweep removes entries past it.
    redis.call('ZADD', 'rq:' .. STATES[status].registry .. ':' .. origin, ts / 1000 + ttl, id)
  end
  redis.call('HINCRBY', STATS, status, 1)
  if f[5] and f[5] ~= '' then
    -- The group's counters outlive its records by the TTL (an hour when records are
    -- not kept at all), so whoever follows the group can still read how it ended. Tasks
    -- of one group may keep their records for different TTLs: the longest wins.
    local group = P .. ':group:' .. f[5]
    redis.call('HINCRBY', group, status, 1)
    local keep = ttl > 0 and ttl or 3600
    if redis.call('TTL', group) < keep then redis.call('EXPIRE', group, keep) end
  end
  redis.call('DEL', pending_key(id))
  -- A TTL of 0 keeps nothing: the record goes as soon as this script returns (keys do
  -- not expire while a script runs, so the transition's later steps still read them).
  local keep_ms = ttl > 0 and ttl * 1000 or 1
  redis.call('PEXPIRE', jk, keep_ms)
  -- The event carries the run's times and model figures, so that a follower of the
  -- channel can account for a task whose record is not kept (a TTL of 0).
  publish('finished', id, {status = status, module = module, error = error, ended_ms = ts,
    started_at = f[7] or nil, worker = f[8] or nil, model_ms = finite(f[9]), model_calls = finite(f[10])})
end

local function allows_failure(child_id, parent_id)
  local raw = redis.call('HGET', job_key(child_id), 'piano_allow_failure')
  if not raw or raw == '' then return false end
  for _, p in ipairs(cjson.decode(raw)) do
    if p == parent_id then return true end
  end
  return false
end

-- A parent reached `status`: release children whose last pending parent it was, and
-- end every descendant whose edge does not allow the failure as dependency_failed.
local function settle_children(parent_id, status, reason, ts, ttl)
  local frontier = {{parent_id, status, reason}}
  local released = 0
  while #frontier > 0 do
    local node = table.remove(frontier, 1)
    local pid, pstatus, preason = node[1], node[2], node[3]
    local children = redis.call('SMEMBERS', children_key(pid))
    -- Settled once: a task that has ended gains no children (a later submit finds it
    -- ended and is met or failed at once), so its set has served its purpose.
    redis.call('DEL', children_key(pid))
    for _, cid in ipairs(children) do
      local cstatus = redis.call('HGET', job_key(cid), 'piano_status')
      if cstatus == 'deferred' then
        if pstatus == 'completed' or allows_failure(cid, pid) then
          redis.call('SREM', pending_key(cid), pid)
          if redis.call('SCARD', pending_key(cid)) == 0 then
            push_queued(cid, redis.call('HGET', job_key(cid), 'origin'), ts, false)
            released = released + 1
          end
        else
          local why = preason
          if pstatus ~= 'dependency_failed' then
            why = 'dependency ' .. pid .. ' ended ' .. pstatus .. (preason and (': ' .. preason) or '')
          end
          set_terminal(cid, 'dependency_failed', why, ts, ttl)
          table.insert(frontier, {cid, 'dependency_failed', why})
        end
      end
    end
  end
  return released
end
