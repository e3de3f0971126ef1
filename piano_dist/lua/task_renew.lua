--[[
  Extend the leases of a worker's running tasks and report which of them have been
  asked to cancel. A task that is no longer running under this worker and attempt
  (finished, re-queued by the sweep, claimed elsewhere) is not touched.

  KEYS[1]  <prefix>:running
  ARGV[1]  piano key prefix
  ARGV[2]  worker name
  ARGV[3]  lease in milliseconds
  ARGV[4…] task id, attempt, task id, attempt, …

  Returns one flag per task: 0 running, 1 cancel requested, -1 lease lost.
]]
--!include task_common

local worker, lease = ARGV[2], tonumber(ARGV[3])
local ts = now_ms()
local flags = {}
for i = 4, #ARGV, 2 do
  local id, attempt = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', job_key(id), 'piano_status', 'worker_name', 'piano_attempts', 'piano_cancel')
  if f[1] ~= 'running' or f[2] ~= worker or f[3] ~= attempt then
    flags[#flags + 1] = -1
  else
    redis.call('ZADD', KEYS[1], ts + lease, id)
    redis.call('HSET', job_key(id), 'last_heartbeat', iso(ts))
    flags[#flags + 1] = (f[4] == '1') and 1 or 0
  end
end
return flags
