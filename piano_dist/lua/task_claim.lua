--[[
  Claim up to `count` queued tasks for one worker, atomically moving each from its
  queue to running under a lease (nothing can be lost between pop and start).
  Queues are scanned in the order given (strict priority). Tasks of a paused module
  are set aside on that module's held list; tasks of a module this worker cannot
  load are left in place for other workers.

  KEYS[1…n]  rq:queue:<name> for each queue, in scan order
  ARGV[1]    piano key prefix
  ARGV[2]    worker name
  ARGV[3]    lease in milliseconds
  ARGV[4]    how many tasks to claim at most
  ARGV[5]    JSON list of module names this worker cannot load
  ARGV[6]    how many skipped tasks to look past per queue before giving up on it

  Returns a list of {id, module, method, payload, timeout, attempts, origin, agent}.
]]
--!include task_common

local worker, lease, count = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skip = {}
for _, m in ipairs(cjson.decode(ARGV[5])) do skip[m] = true end
local window = tonumber(ARGV[6])
local paused_key = P .. ':paused'
local any_paused = redis.call('SCARD', paused_key) > 0

local ts = now_ms()
local claimed = {}
for qi = 1, #KEYS do
  local qkey = KEYS[qi]
  local pos, skipped = 0, 0
  while #claimed < count and skipped <= window do
    local id = redis.call('LINDEX', qkey, pos)
    if not id then break end
    local jk = job_key(id)
    local f = redis.call('HMGET', jk, 'piano_status', 'piano_module', 'piano_method', 'piano_payload',
      'piano_timeout', 'origin', 'piano_agent', 'piano_priority')
    if f[1] ~= 'queued' then
      -- Stale entry (cancelled or expired task): drop it.
      redis.call('LREM', qkey, 1, id)
    elseif any_paused and redis.call('SISMEMBER', paused_key, f[2]) == 1 then
      redis.call('LREM', qkey, 1, id)
      redis.call('RPUSH', P .. ':held:' .. f[2] .. ':' .. f[8], id)
      redis.call('HSET', jk, 'piano_wait_reason', 'module ' .. f[2] .. ' is paused')
    elseif skip[f[2]] then
      pos = pos + 1
      skipped = skipped + 1
    else
      redis.call('LREM', qkey, 1, id)
      local attempts = redis.call('HINCRBY', jk, 'piano_attempts', 1)
      redis.call('HSET', jk, 'status', 'started', 'piano_status', 'running', 'started_at', iso(ts),
        'worker_name', worker, 'last_heartbeat', iso(ts))
      redis.call('HDEL', jk, 'piano_wait_reason')
      redis.call('ZADD', RUNNING, ts + lease, id)
      redis.call('ZADD', 'rq:wip:' .. f[6], FAR_FUTURE, id .. ':' .. attempts)
      redis.call('HINCRBY', STATS, 'backlog', -1)
      publish('started', id, {module = f[2], worker = worker})
      claimed[#claimed + 1] = {id, f[2], f[3], f[4], f[5] or '', tostring(attempts), f[6], f[7] or ''}
    end
  end
  if #claimed >= count then break end
end
return claimed
