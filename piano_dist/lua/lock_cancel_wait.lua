--[[
  Withdraw a queued request (timeout or deadlock victim). If the grant raced ahead of
  the withdrawal the lock is reported granted and the caller keeps it. Removing a
  queued writer can let the readers behind it in, so the queue is served again.

  KEYS[1]  resource base key
  KEYS[2]  lock index
  KEYS[3]  wait-for edges
  ARGV[1]  waiter id

  Returns {"cancelled"} | {"granted", fence} | {"gone"}
]]
--!include lock_lib

local k = rkeys(KEYS[1])
local now = now_ms()
local fence = granted_fence(k, ARGV[1])
if fence then return {'granted', fence} end
local was_queued = redis.call('ZSCORE', k.queue, ARGV[1])
drop_waiter(k, KEYS[3], ARGV[1])
redis.call('DEL', mailbox(k, ARGV[1]))
purge(k, KEYS[2], KEYS[3], now)
promote(k, KEYS[2], KEYS[3], now)
nudge_watchers(k)
if was_queued then return {'cancelled'} end
return {'gone'}
