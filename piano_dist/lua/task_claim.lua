--[[
  Claim up to `count` queued tasks for one worker, atomically moving each from its
  queue to running under a lease (nothing can be lost between pop and start).
  The cluster's scheduling policy (hash <prefix>:sched, set by sched_set_policy)
  decides the order, here, so every worker follows it without an extra round trip:
    priority_first (default, also shortest_job_first): queues scanned in the order
      given (strict priority), FIFO within a queue. A queue's head is never looked
      past: tasks of a paused module are set aside on that module's held list, and
      tasks this worker cannot start (module not registered, or listed in ARGV[5]) are
      parked (includes/task_common.lua) with the reason in `piano_wait_reason`.
      Parked tasks of a level come before that level's queue, for any worker that
      can start their module.
    weighted_priority, round_robin, fair_share: see includes/sched_pick.lua.
  Every start counts one running slot for its module (<prefix>:sched:running, given
  back by sched_unclaim when the run ends) and its wait in <prefix>:sched:stats.
  Work per call is bounded: at most ARGV[6] tasks set aside (held, parked or stale
  entries dropped); when that budget runs out a wake-up token makes a worker call again.

  KEYS[1…n]  rq:queue:<name> for each queue, in scan order
  ARGV[1]    piano key prefix
  ARGV[2]    worker name
  ARGV[3]    lease in milliseconds
  ARGV[4]    how many tasks to claim at most
  ARGV[5]    JSON object {module: why this worker cannot load it} (a JSON list of
             module names is accepted too)
  ARGV[6]    how many tasks to set aside (or look past, for quotas) per call at most
  ARGV[7]    optional: "any" to take tasks of any module name, registered or not (a
             standalone TaskScheduler's own queue group, whose tasks no worker runs)

  Returns a list of {id, module, method, payload, timeout, attempts, origin, agent,
  registration, keep} (registration: the module's JSON in <prefix>:modules; keep: "1",
  or "0" for a task whose value is not kept).
]]
--!include task_common

local worker, lease, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skip = {}
do
  local listed = cjson.decode(ARGV[5])
  if listed[1] ~= nil then
    for _, m in ipairs(listed) do skip[m] = 'it failed to load there' end
  else
    for m, why in pairs(listed) do skip[m] = tostring(why) end
  end
end
local window = tonumber(ARGV[6])
local any_module = ARGV[7] == 'any'
local budget = window
local paused_key = P .. ':paused'
local any_paused = redis.call('SCARD', paused_key) > 0
local policy_cfg = redis.call('HMGET', SCHED, 'policy', 'aging_ms', 'fairness', 'indexed')
local SCHED_STATS = SCHED .. ':stats'
local MODULES = P .. ':modules'
local FIELDS = {'piano_status', 'piano_module', 'piano_method', 'piano_payload', 'piano_timeout', 'origin',
  'piano_agent', 'piano_priority', 'piano_enq_ms', 'piano_keep_result'}

local ts = now_ms()
local claimed = {}

local function origin_of(qi) return string.sub(KEYS[qi], 10) end  -- after 'rq:queue:'

local function is_paused(module)
  return any_paused and redis.call('SISMEMBER', paused_key, module) == 1
end

local registrations = {}
local function registration(module)
  local r = registrations[module]
  if r == nil then
    r = redis.call('HGET', MODULES, module) or false
    registrations[module] = r
  end
  return r
end

-- Why this worker cannot start the module's tasks now, or nil.
local function unstartable(module)
  if skip[module] then
    return 'worker ' .. worker .. ' cannot load module ' .. module .. ': ' .. skip[module]
  end
  if not any_module and not registration(module) then
    return 'module ' .. module .. ' is not registered; the task waits until it is registered again (or is cancelled)'
  end
  return nil
end

local function hold(qkey, id, f)
  redis.call('LREM', qkey, 1, id)
  redis.call('RPUSH', P .. ':held:' .. f[2] .. ':' .. f[8], id)
  redis.call('HSET', job_key(id), 'piano_wait_reason', 'module ' .. f[2] .. ' is paused')
end

local function park_from(qkey, id, f, why)
  redis.call('LREM', qkey, 1, id)
  park(id, string.sub(qkey, 10), f[2], why, false)
end

-- Start one run of a task already taken off its queue.
local function start_run(id, f)
  local jk = job_key(id)
  local attempts = redis.call('HINCRBY', jk, 'piano_attempts', 1)
  set_status(jk, 'running', 'started_at', iso(ts), 'worker_name', worker, 'last_heartbeat', iso(ts),
    'piano_sched_slot', '1')
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
  -- keep: "0" when the task was submitted with keep_result=False (the worker then sends
  -- no value with its completion: nothing would keep it).
  claimed[#claimed + 1] = {id, module, f[3], f[4], f[5] or '', tostring(attempts), f[6], f[7] or '',
    registration(module) or '', f[10] == '0' and '0' or '1'}
end

-- Parked tasks, by queue: origin -> {module, ...} (the index is small: one entry per
-- module and level that has tasks set aside).
local parked = {}
for _, entry in ipairs(redis.call('SMEMBERS', PARKED)) do
  local sep = string.find(entry, ':', 1, true)
  if sep then
    local origin = string.sub(entry, 1, sep - 1)
    parked[origin] = parked[origin] or {}
    table.insert(parked[origin], string.sub(entry, sep + 1))
  end
end

-- Start parked tasks of queue qi whose module this worker can start; `gate(module)`
-- (optional) says whether the module may start one more now (quotas).
local function claim_parked(qi, gate)
  local origin = origin_of(qi)
  for _, m in ipairs(parked[origin] or {}) do
    if #claimed >= count then return end
    if not unstartable(m) and not is_paused(m) then
      local key = parked_key(origin, m)
      while #claimed < count and (not gate or gate(m)) do
        local id = redis.call('LPOP', key)
        if not id then
          redis.call('SREM', PARKED, origin .. ':' .. m)
          break
        end
        local f = redis.call('HMGET', job_key(id), unpack(FIELDS))
        if f[1] == 'queued' and f[2] == m then start_run(id, f) end
      end
    end
  end
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

local function out_of_budget()
  if budget <= 0 then wake(1) return true end
  return false
end

if pick then
  local gate = nil
  if policy == 'fair_share' or (policy == 'weighted_priority' and policy_cfg[3] == '1') then
    gate = function(m) return not at_quota(m) end
  end
  for qi = 1, #KEYS do claim_parked(qi, gate) end
  while #claimed < count do
    local qi, id, f, taken = pick()
    if not qi then break end
    if not taken then redis.call('LREM', KEYS[qi], 1, id) end
    start_run(id, f)
  end
  out_of_budget()
  return claimed
end

-- PRIORITY_FIRST: the fast path. Only a queue's head is ever read.
for qi = 1, #KEYS do
  local qkey = KEYS[qi]
  claim_parked(qi)
  while #claimed < count and budget > 0 do
    local id = redis.call('LINDEX', qkey, 0)
    if not id then break end
    local f = redis.call('HMGET', job_key(id), unpack(FIELDS))
    if f[1] ~= 'queued' or not f[2] then
      -- Stale entry (cancelled or expired task): drop it.
      redis.call('LREM', qkey, 1, id)
      budget = budget - 1
    elseif is_paused(f[2]) then
      hold(qkey, id, f)
      budget = budget - 1
    else
      local why = unstartable(f[2])
      if why then
        park_from(qkey, id, f, why)
        budget = budget - 1
      else
        redis.call('LREM', qkey, 1, id)
        start_run(id, f)
      end
    end
  end
  if #claimed >= count or out_of_budget() then break end
end
return claimed
