--[[
  A waiter woke without mail (a lease it was waiting on may have lapsed): clear out
  expired holders and dead waiters, serve the queue, and report where the waiter stands.

  KEYS[1]  resource base key
  KEYS[2]  lock index
  KEYS[3]  wait-for edges
  ARGV[1]  waiter id

  Returns {"granted", fence} | {"queued", wake_in_ms} | {"gone"} (its own lease lapsed)
]]
--!include lock_lib

local k = rkeys(KEYS[1])
local now = now_ms()
if purge(k, KEYS[2], KEYS[3], now) then
  promote(k, KEYS[2], KEYS[3], now)
  nudge_watchers(k)
end
local fence = granted_fence(k, ARGV[1])
if fence then return {'granted', fence} end
if redis.call('ZSCORE', k.queue, ARGV[1]) then return {'queued', wake_in_queue(k, ARGV[1], now)} end
return {'gone'}
