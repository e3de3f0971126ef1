--[[
  Give a running task back without an outcome, its attempt not counted. Used when a
  worker shuts down before the task could finish (back to the front of its queue), or
  cannot load the task's module (parked: set aside for workers that can, see
  includes/task_common.lua). A task asked to cancel ends cancelled instead.

  KEYS[1]  rq:job:<id>
  ARGV[1]  piano key prefix
  ARGV[2]  task id
  ARGV[3]  worker name
  ARGV[4]  attempt number
  ARGV[5]  why it was given back (shown in its status while it waits)
  ARGV[6]  default result TTL seconds (a task's own piano_result_ttl wins)
  ARGV[7]  "park" to set it aside for other workers, else "" (or absent): front of its queue

  Returns "queued", "parked", "cancelled" or "refused" (not this run's to give back).
]]
--!include task_common

local id, worker, attempt, why, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local f = redis.call('HMGET', KEYS[1], 'piano_status', 'worker_name', 'piano_attempts', 'origin', 'piano_cancel',
  'piano_module')
if f[1] ~= 'running' or f[2] ~= worker or f[3] ~= attempt then return 'refused' end
local ts = now_ms()
if f[5] == '1' then
  set_terminal(id, 'cancelled', 'cancelled while running', ts, ttl)
  settle_children(id, 'cancelled', 'cancelled while running', ts, ttl)
  return 'cancelled'
end
sched_unclaim(id)
redis.call('ZREM', RUNNING, id)
redis.call('ZREM', 'rq:wip:' .. f[4], id .. ':' .. attempt)
redis.call('HINCRBY', KEYS[1], 'piano_attempts', -1)
redis.call('HINCRBY', STATS, 'backlog', 1)
if ARGV[7] == 'park' and f[6] then
  park(id, f[4], f[6], why, true)
  wake(1)  -- an idle worker that can load the module should look now
  return 'parked'
end
redis.call('HSET', KEYS[1], 'piano_wait_reason', why)
push_queued(id, f[4], ts, true)
return 'queued'
