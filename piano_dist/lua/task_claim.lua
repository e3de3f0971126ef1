--[[
  Claim up to `count` queued tasks for one worker, atomically moving each from its
  queue to running under a lease (nothing can be lost between pop and start).
  The cluster's scheduling policy (hash <prefix>:sched, set by sched_set_policy)
  decides the order, here, so every worker follows it without an extra round trip:
    priority_first (default, also shortest_job_first): queues scanned in the order
      given (strict priority), FIFO within a queue. Tasks of a paused module are set
      aside on that module's held list; tasks of a module this worker cannot load are
      left in place for other workers.
    weighted_priority, round_robin, fair_share: see includes/sched_pick.lua.
  Every start counts one running slot for its module (<prefix>:sched:running, given
  back by sched_unclaim when the run ends) and its wait in <prefix>:sched:stats.

  KEYS[1…n]  rq:queue:<name> for each queue, in scan order
  ARGV[1]    piano key prefix
  ARGV[2]    worker name
  ARGV[3]    lease in milliseconds
  ARGV[4]    how many tasks to claim at most
  ARGV[5]    JSON list of module names this worker cannot load
  ARGV[6]    how many skipped tasks to look past per queue before giving up on it

  Returns a list of {id, module, method, payload, timeout, attempts, origin, agent,
  registration} (registration: the module's JSON in <prefix>:modules, "" if none).
]]
--!include task_common

local worker, lease, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skip = {}
for _, m in ipairs(cjson.decode(ARGV[5])) do skip[m] = true end
local window = tonumber(ARGV[6])
local paused_key = P .. ':paused'
local any_paused = redis.call('SCARD', paused_key) > 0
local policy_cfg = redis.call('HMGET', SCHED, 'policy', 'aging_ms', 'fairness', 'indexed')
local SCHED_STATS = SCHED .. ':stats'
local MODULES = P .. ':modules'
local FIELDS = {'piano_status', 'piano_module', 'piano_method', 'piano_payload', 'piano_timeout', 'origin',
  'piano_agent', 'piano_priority', 'piano_enq_ms'}

local ts = now_ms()
local claimed = {}

local function hold(qkey, id, f)
  redis.call('LREM', qkey, 1, id)
  redis.call('RPUSH', P .. ':held:' .. f[2] .. ':' .. f[8], id)
  redis.call('HSET', job_key(id), 'piano_wait_reason', 'module ' .. f[2] .. ' is paused')
end

-- Start one run of a task already taken off its queue.
local function start_run(id, f)
  local jk = job_key(id)
  local attempts = redis.call('HINCRBY', jk, 'piano_attempts', 1)
  redis.call('HSET', jk, 'status', 'started', 'piano_status', 'running', 'started_at', iso(ts),
    'worker_name', worker, 'last_heartbeat', iso(ts), 'piano_sched_slot', '1')
  redis.call('HDEL', jk, 'piano_wait_reason')
  redis.call('ZADD', RUNNING, ts + lease, id)
  redis.call('ZADD', 'rq:wip:' .. f[6], FAR_FUTURE, id .. ':' .. attempts)
  redis.call('HINCRBY', STATS, 'backlog', -1)
  -- Cluster-wide figures for the policies (running per module) and for metrics.
  local module, level = f[2], f[8] or '3'
  local waited = math.max(0, ts - (tonumber(f[9] or '') or ts))
  redis.call('HINCRBY', SCHED .. ':running', module, 1)
  redis.call('HINCRBY', SCHED_STATS, 'starts:p:' .. level, 1)
  redis.call('HINCRBY', SCHED_STATS, 'wait_ms:p:' .. level, waited)
  redis.call('HINCRBY', SCHED_STATS, 'starts:m:' .. module, 1)
  redis.call('HINCRBY', SCHED_STATS, 'wait_ms:m:' .. module, waited)
  if redis.call('EXISTS', pending_key(id)) == 1 then
    redis.call('HINCRBY', SCHED_STATS, 'dependency_violations', 1)  -- must never happen
  end
  publish('started', id, {module = module, worker = worker})
  -- The module's registration rides along, so the worker need not read it per task.
  claimed[#claimed + 1] = {id, module, f[3], f[4], f[5] or '', tostring(attempts), f[6], f[7] or '',
    redis.call('HGET', MODULES, module) or ''}
end

--!include sched_pick

local policy = policy_cfg[1] or 'priority_first'
local pick = nil
if policy == 'weighted_priority' then
  pick = pick_weighted
elseif policy_cfg[4] == '1' and policy == 'round_robin' then
  pick = pick_round_robin
elseif policy_cfg[4] == '1' and policy == 'fair_share' then
  pick = pick_fair_share
end

if pick then
  while #claimed < count do
    local qi, id, f, taken = pick()
    if not qi then break end
    if not taken then redis.call('LREM', KEYS[qi], 1, id) end
    start_run(id, f)
  end
  return claimed
end

-- PRIORITY_FIRST: the fast path.
for qi = 1, #KEYS do
  local qkey = KEYS[qi]
  local pos, skipped = 0, 0
  while #claimed < count and skipped <= window do
    local id = redis.call('LINDEX', qkey, pos)
    if not id then break end
    local f = redis.call('HMGET', job_key(id), unpack(FIELDS))
    if f[1] ~= 'queued' then
      -- Stale entry (cancelled or expired task): drop it.
      redis.call('LREM', qkey, 1, id)
    elseif any_paused and redis.call('SISMEMBER', paused_key, f[2]) == 1 then
      hold(qkey, id, f)
    elseif skip[f[2]] then
      pos = pos + 1
      skipped = skipped + 1
    else
      redis.call('LREM', qkey, 1, id)
      start_run(id, f)
    end
  end
  if #claimed >= count then break end
end
return claimed
