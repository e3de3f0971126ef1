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

  Returns {"granted", fence} | {"queued", wake_in_ms} | {"busy", wake_in_ms} | {"unknown"}
]]
--!include lock_lib

local k = rkeys(KEYS[1])
local index, waitfor = KEYS[3], KEYS[4]
local now = now_ms()
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return {'unknown'} end
if purge(k, index, waitfor, now) then
  promote(k, index, waitfor, now)
  nudge_watchers(k)
end

local info = {resource = ARGV[1], holder = ARGV[4], mode = ARGV[3], owner = ARGV[5],
  lease = tonumber(ARGV[6])}
if redis.call('ZCARD', k.queue) == 0 and compatible(k, info.mode) then
  return {'granted', grant(k, index, ARGV[2], info, now)}
end
if ARGV[7] ~= '1' then return {'busy', wake_in(k, now)} end

info.since = now
redis.call('ZADD', k.queue, redis.call('INCR', k.seq), ARGV[2])
redis.call('HSET', k.waiters, ARGV[2], cjson.encode(info))
redis.call('ZADD', k.wlease, now + info.lease, ARGV[2])
redis.call('HSET', waitfor, ARGV[5], cjson.encode({
  base = KEYS[1], waiter = ARGV[2], since = now, resource = ARGV[1], holder = ARGV[4],
  mode = ARGV[3]}))
return {'queued', wake_in(k, now)}
