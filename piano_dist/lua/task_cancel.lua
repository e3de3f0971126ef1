--[[
  Cancel a task. Queued (also held for a paused module or parked) and deferred tasks end
  cancelled at once and never run; their descendants are settled. A running task
  gets its cancellation flag: it ends cancelled when its run returns.

  KEYS[1]  rq:job:<id>
  ARGV[1]  piano key prefix
  ARGV[2]  task id
  ARGV[3]  default result TTL seconds (a task's own piano_result_ttl wins)
  ARGV[4]  reason text

  Returns "cancelled", "cancelling" (running: flag set), or "" (unknown, another
  deployment's, or finished).
]]
--!include task_common

local id, ttl, reason = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local f = redis.call('HMGET', KEYS[1], 'piano_status', 'origin', 'piano_module', 'piano_priority')
local status = f[1]
if not status or TERMINAL[status] or not owned(f[2]) then return '' end
if status == 'running' then
  redis.call('HSET', KEYS[1], 'piano_cancel', '1')
  publish('cancel_requested', id, {module = f[3]})
  return 'cancelling'
end
if status == 'queued' then unlist_queued(id, f[2], f[3], f[4]) end
local ts = now_ms()
set_terminal(id, 'cancelled', reason, ts, ttl)
settle_children(id, 'cancelled', reason, ts, ttl)
return 'cancelled'
