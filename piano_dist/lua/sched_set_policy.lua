--[[
  Set the cluster's scheduling policy (every worker's claim reads it). Entering
  ROUND_ROBIN or FAIR_SHARE builds the per-(queue, module) index from the queues as
  they are, in queue order; leaving them drops it. Queues themselves are not touched.

  KEYS[1]    <prefix>:sched
  ARGV[1]    piano key prefix
  ARGV[2]    policy: priority_first | round_robin | fair_share | weighted_priority | shortest_job_first
  ARGV[3]    aging in milliseconds per priority level (weighted_priority), or "" to keep
  ARGV[4]    "1" to cap modules at their quota under weighted_priority, "0" not to, "" to keep
  ARGV[5]    JSON list of queue names (origins), most urgent first

  Returns the number of tasks indexed (0 when no index was built).
]]
--!include task_common

local policy, aging, fairness = ARGV[2], ARGV[3], ARGV[4]
local queues = cjson.decode(ARGV[5])
local wants_index = (policy == 'round_robin' or policy == 'fair_share')
local has_index = redis.call('HGET', KEYS[1], 'indexed') == '1'
redis.call('HSET', KEYS[1], 'policy', policy)
if aging ~= '' then redis.call('HSET', KEYS[1], 'aging_ms', aging) end
if fairness ~= '' then redis.call('HSET', KEYS[1], 'fairness', fairness) end

local indexed = 0
if wants_index and not has_index then
  redis.call('HSET', KEYS[1], 'indexed', '1')
  for _, origin in ipairs(queues) do
    for _, id in ipairs(redis.call('LRANGE', 'rq:queue:' .. origin, 0, -1)) do
      local f = redis.call('HMGET', job_key(id), 'piano_status', 'piano_module')
      if f[1] == 'queued' and f[2] then
        sched_index(id, origin, f[2], false)
        indexed = indexed + 1
      end
    end
  end
elseif has_index and not wants_index then
  redis.call('HDEL', KEYS[1], 'indexed')
  for _, origin in ipairs(queues) do
    local mods = SCHED .. ':mods:' .. origin
    for _, m in ipairs(redis.call('ZRANGE', mods, 0, -1)) do
      redis.call('DEL', SCHED .. ':q:' .. origin .. ':' .. m)
    end
    redis.call('DEL', mods)
  end
end
return indexed
