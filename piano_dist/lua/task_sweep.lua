--[[
  Periodic recovery, run by any live worker but by at most one per interval
  (gated by SET NX PX): tasks whose lease expired (their worker died) go back to
  the front of their queue, or end failed as abandoned once `max attempts` of their
  runs were lost that way (piano_lost counts them; runs that ended by raising count
  toward the task's retries, not here); delayed retries whose time has come are queued.

  It also removes entries of RQ's finished/failed/canceled registries whose task
  records have expired (at most ARGV[8] per registry per sweep), and recounts the
  backlog from the lists tasks wait on (includes/task_common.lua: recount_backlog).

  KEYS[1]            the sweep gate key
  KEYS[2 … n+1]      rq:queue:<name> for each of the n queues
  KEYS[n+2 … 2n+1]   rq:deferred:<name> for each queue
  KEYS[2n+2 …]       rq:finished:<name>, rq:failed:<name>, rq:canceled:<name> registries
  ARGV[1]  piano key prefix
  ARGV[2]  gate period in milliseconds
  ARGV[3]  default max attempts
  ARGV[4]  default result TTL seconds (a task's own piano_result_ttl wins)
  ARGV[5]  max tasks to handle per sweep
  ARGV[6]  "force" to ignore the gate (tests, operators)
  ARGV[7]  n, the number of queues
  ARGV[8]  max expired registry entries removed per registry

  Returns {requeued, abandoned, delayed released, registry entries removed, backlog}.
]]
--!include task_common

if ARGV[6] ~= 'force' then
  if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then return {0, 0, 0, 0, -1} end
end
local max_default, ttl, limit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ts = now_ms()
local requeued, abandoned, released = 0, 0, 0

for _, id in ipairs(redis.call('ZRANGEBYSCORE', RUNNING, '-inf', ts, 'LIMIT', 0, limit)) do
  local jk = job_key(id)
  local f = redis.call('HMGET', jk, 'piano_status', 'piano_attempts', 'piano_max_attempts', 'origin',
    'worker_name', 'piano_cancel')
  if f[1] ~= 'running' then
    redis.call('ZREM', RUNNING, id)
  elseif f[6] == '1' then
    -- Cancellation was requested and the run is gone: end it cancelled, do not run it again.
    local why = 'cancelled while running (worker ' .. (f[5] or '?') .. ' stopped renewing its lease)'
    set_terminal(id, 'cancelled', why, ts, ttl)
    settle_children(id, 'cancelled', why, ts, ttl)
  else
    local attempts = tonumber(f[2] or '0')
    local max_attempts = tonumber(f[3] or '') or max_default
    local lost = 'worker ' .. (f[5] or '?') .. ' stopped renewing its lease (attempt ' .. attempts .. ')'
    local lost_runs = redis.call('HINCRBY', jk, 'piano_lost', 1)
    if lost_runs >= max_attempts then
      local why = 'abandoned: ' .. lost .. '; gave up after ' .. lost_runs ..
        ' attempts lost to dead workers (max_attempts ' .. max_attempts .. ')'
      set_terminal(id, 'failed', why, ts, ttl)
      settle_children(id, 'failed', why, ts, ttl)
      abandoned = abandoned + 1
    else
      sched_unclaim(id)
      redis.call('ZREM', RUNNING, id)
      redis.call('ZREM', 'rq:wip:' .. f[4], id .. ':' .. attempts)
      redis.call('HSET', jk, 'piano_last_loss', lost)
      redis.call('HINCRBY', STATS, 'backlog', 1)
      redis.call('HINCRBY', STATS, 'requeued', 1)
      push_queued(id, f[4], ts, true)
      requeued = requeued + 1
    end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', ts, 'LIMIT', 0, limit)) do
  redis.call('ZREM', P .. ':delayed', id)
  local f = redis.call('HMGET', job_key(id), 'piano_status', 'origin')
  if f[1] == 'queued' then
    redis.call('HDEL', job_key(id), 'piano_wait_reason')
    push_queued(id, f[2], ts, false)
    released = released + 1
  end
end
-- RQ's registries of ended jobs: entries whose record expired (score = expiry, s).
local nq, per_registry = tonumber(ARGV[7] or '0'), tonumber(ARGV[8] or '0')
local removed = 0
for i = 2 + 2 * nq, #KEYS do
  local gone = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ts / 1000, 'LIMIT', 0, per_registry)
  for j = 1, #gone, 1000 do
    redis.call('ZREM', KEYS[i], unpack(gone, j, math.min(j + 999, #gone)))
  end
  removed = removed + #gone
end

local backlog = -1
if nq > 0 then
  local queues, deferred = {}, {}
  for i = 1, nq do
    queues[i] = KEYS[1 + i]
    deferred[i] = KEYS[1 + nq + i]
  end
  backlog = recount_backlog(queues, deferred)
end
return {requeued, abandoned, released, removed, backlog}
