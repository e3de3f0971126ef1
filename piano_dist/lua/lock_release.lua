--[[
  Release one lock and hand the resource to the next waiters in the same step.
  A lock whose lease already lapsed was lost, not released: returns 0.

  KEYS[1]  resource base key
  KEYS[2]  lock index
  KEYS[3]  wait-for edges
  ARGV[1]  lock id

  Returns 1 (released) | 0 (not held: unknown, already released or lease lapsed)
]]
--!include lock_lib

local k = rkeys(KEYS[1])
local now = now_ms()
purge(k, KEYS[2], KEYS[3], now)
local held = redis.call('ZSCORE', k.holders, ARGV[1])
if held then drop_lock(k, KEYS[2], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
promote(k, KEYS[2], KEYS[3], now)
nudge_watchers(k)
if held then return 1 end
return 0
