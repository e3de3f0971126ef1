--[[
  Resume a paused module: its held tasks return to the front of their priority
  queues in their original order, so they run in priority order as before. A task
  goes back to the queue it came from (its `origin`: a standalone scheduler's or a
  manager's own queue group), else to the cluster queue of its level.

  KEYS[1…5]  rq:queue:<name> per priority level, CRITICAL first (the cluster's)
  ARGV[1]    piano key prefix
  ARGV[2]    module name
  ARGV[3…7]  the priority numbers matching KEYS (1…5)

  Returns the number of tasks put back.
]]
--!include task_common

local module = ARGV[2]
redis.call('SREM', P .. ':paused', module)
local moved = 0
for i = 1, #KEYS do
  local held = P .. ':held:' .. module .. ':' .. ARGV[2 + i]
  local ids = redis.call('LRANGE', held, 0, -1)
  for j = #ids, 1, -1 do
    local origin = redis.call('HGET', job_key(ids[j]), 'origin')
    local qkey = origin and ('rq:queue:' .. origin) or KEYS[i]
    redis.call('LPUSH', qkey, ids[j])
    sched_index(ids[j], string.sub(qkey, 10), module, true)
    redis.call('HDEL', job_key(ids[j]), 'piano_wait_reason')
  end
  redis.call('DEL', held)
  moved = moved + #ids
end
if moved > 0 then wake(math.min(moved, 100)) end
return moved
