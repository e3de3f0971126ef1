--[[
  Give a running task back without an outcome: to the front of its queue, its
  attempt not counted. Used when a worker shuts down before the task could finish,
  or cannot load the task's module (other workers may). A task asked to cancel
  ends cancelled instead.

  KEYS[1]  rq:job:<id>
  ARGV[1]  piano key prefix
  ARGV[2]  task id
  ARGV[3]  worker name
  ARGV[4]  attempt number
  ARGV[5]  why it was given back (shown in its status while it waits)
  ARGV[6]  result TTL seconds

  Returns "queued", "cancelled" or "refused" (not this run's to give back).
]]
--!include task_common

local id, worker, attempt, why, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local f = redis.call('HMGET', KEYS[1], 'piano_status', 'worker_name', 'piano_attempts', 'origin', 'piano_cancel')
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
redis.call('HSET', KEYS[1], 'piano_wait_reason', why)
redis.call('HINCRBY', STATS, 'backlog', 1)
push_queued(id, f[4], ts, true)
return 'queued'
