--[[
  Shared prelude of the lock_* scripts (pulled in with `--!include lock_lib`).

  A resource's keys all start with its base key "<prefix>:res:{<resource_id>}":
    :holders   ZSET lock_id -> lease expiry (ms, Redis TIME)
    :locks     HASH lock_id -> JSON {resource, holder, mode, owner, lease, acquired_at, fence}
    :writer    STRING lock_id of the WRITE/EXCLUSIVE holder, if any
    :queue     ZSET waiter_id -> arrival number (FIFO order)
    :waiters   HASH waiter_id -> JSON {resource, holder, mode, owner, lease, since}
    :wlease    ZSET waiter_id -> expiry of the waiter's own lease (dead waiters drop out)
    :seq       arrival counter
    :fence     latest fencing token granted (INCR on every grant)
    :watchers  SET of mailbox keys of acquire_many callers to nudge when things free up
    :mbox:<waiter_id>  LIST, the waiter's wake-up mailbox ("g:<fence>", "d:<json>", "n")
  A waiter's id becomes its lock id when granted.
  Global: lock index HASH lock_id -> base; wait-for HASH owner -> JSON {base, waiter, ...}.
]]
redis.replicate_commands()

local MAILBOX_TTL_MS = 60000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function rkeys(base)
  return {
    base = base, holders = base .. ':holders', locks = base .. ':locks',
    writer = base .. ':writer', queue = base .. ':queue', waiters = base .. ':waiters',
    wlease = base .. ':wlease', seq = base .. ':seq', fence = base .. ':fence',
    watchers = base .. ':watchers',
  }
end

local function post(box, msg)
  redis.call('RPUSH', box, msg)
  redis.call('PEXPIRE', box, MAILBOX_TTL_MS)
end

local function mailbox(k, waiter_id)
  return k.base .. ':mbox:' .. waiter_id
end

-- acquire_many callers hold nothing while they wait; any release may let them in.
local function nudge_watchers(k)
  local boxes = redis.call('SMEMBERS', k.watchers)
  for _, box in ipairs(boxes) do post(box, 'n') end
  if #boxes > 0 then redis.call('DEL', k.watchers) end
end

local function drop_lock(k, index, lock_id)
  redis.call('ZREM', k.holders, lock_id)
  redis.call('HDEL', k.locks, lock_id)
  if redis.call('GET', k.writer) == lock_id then redis.call('DEL', k.writer) end
  redis.call('HDEL', index, lock_id)
end

local function drop_waiter(k, waitfor, waiter_id)
  local raw = redis.call('HGET', k.waiters, waiter_id)
  redis.call('ZREM', k.queue, waiter_id)
  redis.call('ZREM', k.wlease, waiter_id)
  redis.call('HDEL', k.waiters, waiter_id)
  if not raw then return nil end
  local w = cjson.decode(raw)
  local edge = redis.call('HGET', waitfor, w.owner)
  if edge and cjson.decode(edge).waiter == waiter_id then redis.call('HDEL', waitfor, w.owner) end
  return w
end

-- Expired holders (their process stopped renewing) and dead waiters leave.
local function purge(k, index, waitfor, now)
  local changed = false
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holders, '-inf', '(' .. now)) do
    drop_lock(k, index, id); changed = true
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.wlease, '-inf', '(' .. now)) do
    drop_waiter(k, waitfor, id); changed = true
  end
  return changed
end

local function compatible(k, mode)
  if mode == 'read' then return redis.call('EXISTS', k.writer) == 0 end
  return redis.call('ZCARD', k.holders) == 0
end

local function grant(k, index, lock_id, info, now)
  local fence = redis.call('INCR', k.fence)
  info.fence = fence
  info.acquired_at = now
  redis.call('ZADD', k.holders, now + info.lease, lock_id)
  redis.call('HSET', k.locks, lock_id, cjson.encode(info))
  if info.mode ~= 'read' then redis.call('SET', k.writer, lock_id) end
  redis.call('HSET', index, lock_id, k.base)
  return fence
end

-- Serve the queue head while it fits: a run of readers together, or one writer.
-- A reader never passes a writer queued ahead of it (writer preference by FIFO).
local function promote(k, index, waitfor, now)
  while true do
    local head = redis.call('ZRANGE', k.queue, 0, 0)[1]
    if not head then return end
    local raw = redis.call('HGET', k.waiters, head)
    if not raw then
      redis.call('ZREM', k.queue, head)
    else
      local w = cjson.decode(raw)
      if not compatible(k, w.mode) then return end
      drop_waiter(k, waitfor, head)
      local fence = grant(k, index, head, {
        resource = w.resource, holder = w.holder, mode = w.mode, owner = w.owner, lease = w.lease,
      }, now)
      post(mailbox(k, head), 'g:' .. fence)
      if w.mode ~= 'read' then return end
    end
  end
end

-- Milliseconds until the next lease that could end by itself (a holder's or a queued
-- waiter's); waiters sleep at most that long, since nobody posts when a lease lapses.
local function wake_in(k, now)
  local soonest = -1
  for _, key in ipairs({k.holders, k.wlease}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] then
      local t = tonumber(first[2]) - now
      if soonest < 0 or t < soonest then soonest = t end
    end
  end
  if soonest < 0 then return -1 end
  return soonest + 1
end

local function granted_fence(k, lock_id)
  local raw = redis.call('HGET', k.locks, lock_id)
  if not raw then return nil end
  return cjson.decode(raw).fence
end
