--[[
  A model call to an endpoint ended: give back its in-flight place (waking one waiter),
  correct the token reservation to what the reply really used, learn the typical
  completion size, and, when the endpoint pushed back (429/503 with Retry-After), pause
  every caller of the endpoint until the given time. O(1).

  KEYS[1]  endpoint limiter hash (see llm_acquire.lua)
  KEYS[2]  endpoint in-flight sorted set
  KEYS[3]  endpoint wake list (waiters for a place BLPOP on it)
  ARGV[1]  holder id
  ARGV[2]  tokens used minus tokens reserved (may be negative), 0 = nothing to correct
  ARGV[3]  tokens per minute the call was admitted under, 0 = unlimited
  ARGV[4]  completion tokens of the reply, -1 = no reply
  ARGV[5]  pause until (ms, Redis time: send time + Retry-After), 0 = no pushback
  ARGV[6]  requests in flight at most (bounds the wake list), 0 = unlimited

  Returns the pause in force (ms, 0 = none).
]]
local correction = tonumber(ARGV[2]) or 0
local tpm = tonumber(ARGV[3]) or 0
local completion = tonumber(ARGV[4]) or -1
local pause_until = tonumber(ARGV[5]) or 0
local max_in_flight = tonumber(ARGV[6]) or 0

if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 and max_in_flight > 0 then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, max_in_flight - 1)
  redis.call('PEXPIRE', KEYS[3], 60000)
end

local s = redis.call('HMGET', KEYS[1], 'ttat', 'cavg', 'pause')
if tpm > 0 and correction ~= 0 and tonumber(s[1]) then
  redis.call('HSET', KEYS[1], 'ttat', tostring(tonumber(s[1]) + correction * 60000 / tpm))
end
if completion >= 0 then
  local cavg = tonumber(s[2])
  if cavg then cavg = cavg * 0.8 + completion * 0.2 else cavg = completion end
  redis.call('HSET', KEYS[1], 'cavg', tostring(cavg))
end
local pause = tonumber(s[3]) or 0
if pause_until > pause then
  pause = pause_until
  redis.call('HSET', KEYS[1], 'pause', tostring(pause))
end
-- Keep the hash an hour past its last use, and at least until a pause ends.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local need = math.ceil(math.max(pause - now, 0)) + 3600000
if redis.call('PTTL', KEYS[1]) < need then redis.call('PEXPIRE', KEYS[1], need) end
return math.floor(pause)
