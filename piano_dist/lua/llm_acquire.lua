--[[
  Admit one model call to an endpoint now, or say how long it must wait. This is the
  cluster-wide limiter every worker shares: requests per minute, tokens per minute,
  requests in flight, and the endpoint's own pushback (a pause set by llm_release).

  Rates are paced (GCRA), not spent as per-minute bursts: request slots are 60000/rpm
  ms apart with a burst of 2; tokens flow at tpm/60000 per ms with at most one
  second's worth at once. A caller that must wait is given a reserved send time (a
  ticket) so that it comes back once, when its turn is due, instead of polling; "stat"
  paces the calls actually sent, so tickets used late still never bunch up.
  O(1) per call (ZREMRANGEBYSCORE removes each lapsed place once).

  KEYS[1]  endpoint limiter hash: rtat (next free request slot, ms), stat (pacing of the
           calls sent, ms), ttat (next free token slot, ms), cavg (moving average of
           completion tokens), pause (ms before which nobody sends)
  KEYS[2]  endpoint in-flight sorted set: holder -> place expiry (ms)
  ARGV[1]  holder id (one per call)
  ARGV[2]  prompt tokens (an estimate from the text)
  ARGV[3]  completion tokens at most (the request's max_tokens), 0 = not given
  ARGV[4]  requests per minute, 0 = unlimited
  ARGV[5]  tokens per minute, 0 = unlimited
  ARGV[6]  requests in flight at most, 0 = unlimited
  ARGV[7]  place lease, ms: how long a sent call may hold its in-flight place
  ARGV[8]  ticket: the send time (ms) an earlier answer reserved, or 0

  Returns {status, wait_ms, reserved_tokens, now_ms, ticket}:
    'go'     send now; now_ms (Redis time) is when the call was sent
    'wait'   sleep wait_ms, then come back with the ticket
    'pause'  the endpoint pushed back: sleep wait_ms, come back without a ticket
    'full'   every in-flight place is taken: wait for a release, come back without one
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local holder = ARGV[1]
local prompt = tonumber(ARGV[2]) or 0
local max_completion = tonumber(ARGV[3]) or 0
local rpm = tonumber(ARGV[4]) or 0
local tpm = tonumber(ARGV[5]) or 0
local max_in_flight = tonumber(ARGV[6]) or 0
local lease = tonumber(ARGV[7]) or 60000
local ticket = tonumber(ARGV[8]) or 0

-- Anything unparsable in the hash counts as unset rather than failing every call.
local s = redis.call('HMGET', KEYS[1], 'rtat', 'stat', 'ttat', 'cavg', 'pause')
local rtat = tonumber(s[1]) or 0
local stat = tonumber(s[2]) or 0
local ttat = tonumber(s[3]) or 0
local cavg = tonumber(s[4]) or 0
local pause = tonumber(s[5]) or 0
local floor_now = math.floor(now)

local function keep(horizon)
  local ttl = math.ceil(math.max(horizon, rtat, stat, ttat, pause, now) - now) + 3600000
  redis.call('PEXPIRE', KEYS[1], ttl)
  if max_in_flight > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end

if pause > now then
  -- Pushback: everyone waits, and nobody keeps a place or a reservation meanwhile.
  if max_in_flight > 0 then redis.call('ZREM', KEYS[2], holder) end
  return {'pause', math.ceil(pause - now), 0, floor_now, '0'}
end

if max_in_flight > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if not redis.call('ZSCORE', KEYS[2], holder) and redis.call('ZCARD', KEYS[2]) >= max_in_flight then
    return {'full', 0, 0, floor_now, '0'}
  end
end

local interval = 0
if rpm > 0 then interval = 60000 / rpm end
local per_ms = 0
if tpm > 0 then per_ms = tpm / 60000 end

local function sent_conforms()
  return rpm <= 0 or stat - interval <= now
end

local function go(reserved)
  if rpm > 0 then
    stat = math.max(stat, now) + interval
    redis.call('HSET', KEYS[1], 'stat', tostring(stat))
  end
  if max_in_flight > 0 then redis.call('ZADD', KEYS[2], now + lease, holder) end
  keep(now + lease)
  return {'go', 0, reserved, floor_now, '0'}
end

if ticket > now then
  return {'wait', math.ceil(ticket - now), 0, floor_now, tostring(ticket)}
end
if ticket > 0 and sent_conforms() then
  return go(0)
end

-- Reserve the earliest send time both rates allow.
local cost = 0
if tpm > 0 then
  local completion = cavg
  if max_completion > 0 and max_completion < completion then completion = max_completion end
  cost = prompt + completion
end
local at = now
if rpm > 0 then at = math.max(at, rtat - interval) end
if tpm > 0 then at = math.max(at, ttat - 1000) end
if rpm > 0 then
  rtat = math.max(rtat, at) + interval
  redis.call('HSET', KEYS[1], 'rtat', tostring(rtat))
end
if tpm > 0 then
  ttat = math.max(ttat, at) + cost / per_ms
  redis.call('HSET', KEYS[1], 'ttat', tostring(ttat))
end
if at <= now then
  if sent_conforms() then return go(cost) end
  at = stat - interval  -- tickets used late went first: follow them
end
if max_in_flight > 0 then redis.call('ZADD', KEYS[2], at + lease, holder) end
keep(at + lease)
return {'wait', math.ceil(at - now), cost, floor_now, tostring(at)}
