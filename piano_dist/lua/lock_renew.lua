--[[
  Extend the lease of a held lock, or of a queued waiter's place in line. A lease
  that already lapsed is not revived: the holder has lost the lock (its next fenced
  write is refused) and the waiter has lost its place.

  KEYS[1]  resource base key
  ARGV[1]  lock or waiter id
  ARGV[2]  lease in ms
  ARGV[3]  "lock" | "wait"

  Returns the new expiry in ms, 0 when lost, or -1 for a waiter that was granted
  meanwhile (its mail is waiting).
]]
--!include lock_lib

local k = rkeys(KEYS[1])
local now = now_ms()
local zkey = k.holders
if ARGV[3] == 'wait' then
  zkey = k.wlease
  if granted_fence(k, ARGV[1]) then return -1 end
end
local expiry = redis.call('ZSCORE', zkey, ARGV[1])
if not expiry or tonumber(expiry) < now then return 0 end
local until_ms = now + tonumber(ARGV[2])
redis.call('ZADD', zkey, 'XX', until_ms, ARGV[1])
return until_ms
