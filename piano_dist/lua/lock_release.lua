--[[
  Release one lock and hand the resource to the next waiters in the same step.
  A lock whose lease already lapsed was lost, not released: returns 0.
  An operator's release (ARGV[2] "fence") also bumps the resource's fencing token, so
  the holder it was taken from, if still running, has its next fenced write refused.

  KEYS[1]  resource base key
  KEYS[2]  lock index
  KEYS[3]  wait-for edges
  ARGV[1]  lock id
  ARGV[2]  "fence" for an operator's release, else "" (or absent)

  Returns 1 (released) | 0 (not held: unknown, already released or lease lapsed)
]]
redis.replicate_commands()

-- Fast path, before the shared prelude: a live lock with nobody queued or watching
-- (nothing to hand over or nudge) just leaves. Expired holders of the resource stay
-- until the next acquire or wait check purges them, as when nobody releases at all.
do
  local base, id = KEYS[1], ARGV[1]
  local holders = base .. ':holders'
  local expiry = redis.call('ZSCORE', holders, id)
  if expiry and redis.call('EXISTS', base .. ':queue', base .. ':watch:read', base .. ':watch:write') == 0 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tonumber(expiry) >= now then  -- as purge(): a lease ending before now has lapsed
      redis.call('ZREM', holders, id)
      redis.call('HDEL', base .. ':locks', id)
      local writer = base .. ':writer'
      if redis.call('GET', writer) == id then redis.call('DEL', writer) end
      redis.call('HDEL', KEYS[2], id)
      if ARGV[2] == 'fence' then redis.call('INCR', base .. ':fence') end
      return 1
    end
  end
end

--!include lock_lib

local k = rkeys(KEYS[1])
local now = now_ms()
purge(k, KEYS[2], KEYS[3], now)
local held = redis.call('ZSCORE', k.holders, ARGV[1])
if held then drop_lock(k, KEYS[2], ARGV[1]) else redis.call('HDEL', KEYS[2], ARGV[1]) end
if held and ARGV[2] == 'fence' then redis.call('INCR', k.fence) end
promote(k, KEYS[2], KEYS[3], now)
nudge_watchers(k)
if held then return 1 end
return 0
