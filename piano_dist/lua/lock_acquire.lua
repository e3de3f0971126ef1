--[[
  Ask for a lock on one resource. Granted at once when nobody is queued and the mode
  fits the current holders; otherwise the request joins the FIFO queue (or, for a
  try-only request, is refused) and the caller waits on its mailbox.

  KEYS[1]  resource base key  <prefix>:res:{<resource_id>}
  KEYS[2]  resource registry (HASH resource_id -> type)
  KEYS[3]  lock index (HASH lock_id -> base)
  KEYS[4]  wait-for edges (HASH owner -> JSON)
  ARGV[1]  resource id
  ARGV[2]  lock id (also the waiter id while queued)
  ARGV[3]  mode: read | write | exclusive
  ARGV[4]  holder id (a label for status and errors; locks are not keyed by it)
  ARGV[5]  owner (process + execution context), the node of the wait-for graph
  ARGV[6]  lease in ms
  ARGV[7]  "1" to queue when busy, "0" to only try

  Returns {"granted", fence, type} | {"queued", wake_in_ms, type} | {"busy", wake_in_ms}
        | {"unknown"}; type is the resource type from the registry. A queued caller sleeps
  at most wake_in_ms (see wake_in_queue in lock_lib) unless posted to.
]]
redis.replicate_commands()
local kind = redis.call('HGET', KEYS[2], ARGV[1])
if not kind then return {'unknown'} end

-- Uncontended fast path, before the shared prelude: nobody holds the resource and
-- nobody waits (a waiter's lease lives beside its queue entry), so there is nothing
-- to purge, serve or queue behind. Records exactly what grant() in lock_lib records.
do
  local base = KEYS[1]
  if redis.call('EXISTS', base .. ':holders', base .. ':queue') == 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local lease = tonumber(ARGV[6])
    local fence = redis.call('INCR', base .. ':fence')
    redis.call('ZADD', base .. ':holders', now + lease, ARGV[2])
    redis.call('HSET', base .. ':locks', ARGV[2], cjson.encode({resource = ARGV[1], holder = ARGV[4],
      mode = ARGV[3], owner = ARGV[5], lease = lease, acquired_at = now, fence = fence}))
    if ARGV[3] ~= 'read' then redis.call('SET', base .. ':writer', ARGV[2]) end
    redis.call('HSET', KEYS[3], ARGV[2], base)
    return {'granted', fence, kind}
  end
end

--!include lock_lib

local k = rkeys(KEYS[1])
local index, waitfor = KEYS[3], KEYS[4]
local now = now_ms()
local info = {resource = ARGV[1], holder = ARGV[4], mode = ARGV[3], owner = ARGV[5],
  lease = tonumber(ARGV[6])}

if purge(k, index, waitfor, now) then
  promote(k, index, waitfor, now)
  nudge_watchers(k)
end
-- A call retried after its reply was lost (connection dropped) finds its own request.
local mine = granted_fence(k, ARGV[2])
if mine then return {'granted', mine, kind} end
if redis.call('ZSCORE', k.queue, ARGV[2]) then return {'queued', wake_in_queue(k, ARGV[2], now), kind} end
if redis.call('ZCARD', k.queue) == 0 and compatible(k, info.mode) then
  return {'granted', grant(k, index, ARGV[2], info, now), kind}
end
if ARGV[7] ~= '1' then return {'busy', wake_in(k, now)} end

info.since = now
redis.call('ZADD', k.queue, redis.call('INCR', k.seq), ARGV[2])
redis.call('HSET', k.waiters, ARGV[2], cjson.encode(info))
redis.call('ZADD', k.wlease, now + info.lease, ARGV[2])
redis.call('HSET', waitfor, ARGV[5], cjson.encode({
  base = KEYS[1], waiter = ARGV[2], since = now, resource = ARGV[1], holder = ARGV[4],
  mode = ARGV[3]}))
return {'queued', wake_in_queue(k, ARGV[2], now), kind}
