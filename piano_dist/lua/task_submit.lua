--[[
  Submit one task: queued, deferred behind unfinished parents, or at once
  dependency_failed when a parent already failed on an edge that does not allow it.
  Nothing is written when the submission is refused.

  KEYS[1]  rq:job:<id>            the task's hash (must not exist)
  ARGV[1]  piano key prefix
  ARGV[2]  task id
  ARGV[3]  origin (RQ queue name of the task's priority)
  ARGV[4]  backlog limit (queued + deferred tasks); 0 = unbounded
  ARGV[5]  result TTL in seconds (for a task that ends at once)
  ARGV[6]  JSON list of parent ids
  ARGV[7]  JSON list of parent ids whose failure this task tolerates
  ARGV[8…] field, value, field, value … for the hash (RQ's job fields + piano_* fields)

  Returns {state, detail}: state is queued | deferred | dependency_failed.
  Errors: "UNKNOWN_DEPENDENCY <id>", "TASK_EXISTS <id>", "QUEUE_FULL <backlog>".
]]
--!include task_common

local id, origin = ARGV[2], ARGV[3]
local limit, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local parents = cjson.decode(ARGV[6])
local tolerated = {}
for _, p in ipairs(cjson.decode(ARGV[7])) do tolerated[p] = true end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('TASK_EXISTS ' .. id)
end
local backlog = tonumber(redis.call('HGET', STATS, 'backlog') or '0')
if limit > 0 and backlog >= limit then
  return redis.error_reply('QUEUE_FULL ' .. backlog)
end

-- Classify every parent before writing anything.
local unfinished, failed_parent, failed_status, failed_reason = {}, nil, nil, nil
for _, pid in ipairs(parents) do
  local f = redis.call('HMGET', job_key(pid), 'piano_status', 'piano_error')
  local st = f[1]
  if not st then return redis.error_reply('UNKNOWN_DEPENDENCY ' .. pid) end
  if not TERMINAL[st] then
    table.insert(unfinished, pid)
  elseif st ~= 'completed' and not tolerated[pid] and not failed_parent then
    failed_parent, failed_status, failed_reason = pid, st, f[2]
  end
end

local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', STATS, 'submitted', 1)
redis.call('HINCRBY', SCHED .. ':stats', 'submitted:p:' .. (redis.call('HGET', KEYS[1], 'piano_priority') or '3'), 1)
local ts = now_ms()

if failed_parent then
  redis.call('HSET', KEYS[1], 'piano_status', 'deferred')
  redis.call('HINCRBY', STATS, 'backlog', 1)
  local why = 'dependency ' .. failed_parent .. ' ended ' .. failed_status ..
    (failed_reason and (': ' .. failed_reason) or '')
  set_terminal(id, 'dependency_failed', why, ts, ttl)
  return {'dependency_failed', why}
end

redis.call('HINCRBY', STATS, 'backlog', 1)
if #unfinished == 0 then
  push_queued(id, origin, ts, false)
  return {'queued', ''}
end

for _, pid in ipairs(unfinished) do
  redis.call('SADD', pending_key(id), pid)
  redis.call('SADD', children_key(pid), id)
end
redis.call('HSET', KEYS[1], 'status', 'deferred', 'piano_status', 'deferred')
redis.call('ZADD', 'rq:deferred:' .. origin, ts / 1000, id)
publish('deferred', id, {module = redis.call('HGET', KEYS[1], 'piano_module')})
return {'deferred', tostring(#unfinished)}
