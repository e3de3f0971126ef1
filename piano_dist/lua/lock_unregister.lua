--[[
  Forget a resource, unless it is still held or waited for (nothing in use is dropped).

  KEYS[1]  resource base key
  KEYS[2]  resource registry
  KEYS[3]  lock index
  KEYS[4]  wait-for edges
  ARGV[1]  resource id

  Returns "ok" | "unknown" | "busy"
]]
--!include lock_lib

local k = rkeys(KEYS[1])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 'unknown' end
purge(k, KEYS[3], KEYS[4], now_ms())
if redis.call('ZCARD', k.holders) > 0 or redis.call('ZCARD', k.queue) > 0 then return 'busy' end
redis.call('HDEL', KEYS[2], ARGV[1])
return 'ok'
