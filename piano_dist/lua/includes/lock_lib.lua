--[[
  Shared prelude of the lock_* scripts (pulled in with `--!include lock_lib`).

  A resource's keys all start with its base key "<prefix>:res:{<resource_id>}":
    :holders   ZSET lock_id -> lease expiry (ms, Redis TIME)
    :locks     HASH lock_id -> JSON {resource, holder, mode, owner, lease, acquired_at, fence}
    :writer    STRING lock_id of the WRITE/EXCLUSIVE holder, if any
    :queue     ZSET waiter_id -> arrival number (FIFO order)
    :waiters   HASH waiter_id -> JSON {resource, holder, mode, owner, lease, since}
    :wlease    ZSET waiter_id -> expiry of the waiter's own lease (dead waiters drop out)
    :seq       arrival counter (queue places and watcher registrations)
    :fence     latest fencing token granted (INCR on every grant)
    :watch:read   ZSET mailbox key -> registration number: acquire_many callers that
    :watch:write  need READ (or WRITE/EXCLUSIVE) here and were refused, oldest first
    :mbox:<waiter_id>  LIST, the waiter's wake-up mailbox ("g:<fence>", "d:<json>", "n")
  A waiter's id becomes its lock id when granted.
  Global: lock index HASH lock_id -> base; wait-for HASH owner -> JSON {base, waiter, ...}.

  Cost: every function here does O(log n) work in the resource's holders, waiters and
  watchers, except purge (at most PURGE_BATCH lapsed holders and as many lapsed waiters
  per call, each removed once) and promote (one grant per waiter served: a run of readers
  is served together; at most PURGE_BATCH lapsed heads skipped). Nothing walks the queue
  or the watchers.
]]
redis.replicate_commands()

local MAILBOX_TTL_MS = 60000
local PURGE_BATCH = 100

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function rkeys(base)
  return {
    base = base, holders = base .. ':holders', locks = base .. ':locks',
    writer = base .. ':writer', queue = base .. ':queue', waiters = base .. ':waiters',
    wlease = base .. ':wlease', seq = base .. ':seq', fence = base .. ':fence',
    watch_read = base .. ':watch:read', watch_write = base .. ':watch:write',
  }
end

local function post(box, msg)
  redis.call('RPUSH', box, msg)
  redis.call('PEXPIRE', box, MAILBOX_TTL_MS)
end

local function mailbox(k, waiter_id)
  return k.base .. ':mbox:' .. waiter_id
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

-- Expired holders (their process stopped renewing) and dead waiters leave, at most
-- PURGE_BATCH of each per call so that no call is long when many lapse at once (a
-- killed process with hundreds of requests). What is left is purged by the next call,
-- which comes at once: wake_in/wake_in_queue point at the lapsed entries; promote
-- skips a lapsed waiter on its own.
local function purge(k, index, waitfor, now)
  local changed = false
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holders, '-inf', '(' .. now, 'LIMIT', 0, PURGE_BATCH)) do
    drop_lock(k, index, id); changed = true
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.wlease, '-inf', '(' .. now, 'LIMIT', 0, PURGE_BATCH)) do
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
-- A head whose own lease lapsed is dropped, never granted (purge may not have reached
-- it), at most PURGE_BATCH per call like purge; the next call goes on.
local function promote(k, index, waitfor, now)
  local dropped = 0
  while true do
    local head = redis.call('ZRANGE', k.queue, 0, 0)[1]
    if not head then return end
    local raw = redis.call('HGET', k.waiters, head)
    local lease_end = redis.call('ZSCORE', k.wlease, head)
    if not raw or not lease_end or tonumber(lease_end) < now then
      if dropped >= PURGE_BATCH then return end
      drop_waiter(k, waitfor, head)
      dropped = dropped + 1
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

local function until_ms(at, now)
  return math.max(tonumber(at) - now, 0) + 1
end

-- Milliseconds until the next lease on the resource that could end by itself (a
-- holder's or a queued waiter's), -1 if none: how long an acquire_many caller refused
-- here may sleep, since nobody posts when a lease lapses.
local function wake_in(k, now)
  local soonest = nil
  for _, key in ipairs({k.holders, k.wlease}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if first[2] and (not soonest or tonumber(first[2]) < soonest) then soonest = tonumber(first[2]) end
  end
  if not soonest then return -1 end
  return until_ms(soonest, now)
end

-- Milliseconds until a lapse that could change a queued waiter's standing: the lease of
-- the waiter just ahead of it (it may then be next, or be served), or for the head the
-- soonest holder's lease. Each lapse thus wakes the one waiter it concerns, which
-- purges it and serves the queue; the rest of the queue sleeps on until posted to.
local function wake_in_queue(k, waiter_id, now)
  local seq = redis.call('ZSCORE', k.queue, waiter_id)
  if not seq then return wake_in(k, now) end
  local at
  local ahead = redis.call('ZREVRANGEBYSCORE', k.queue, '(' .. seq, '-inf', 'LIMIT', 0, 1)[1]
  if ahead then
    at = redis.call('ZSCORE', k.wlease, ahead)
  else
    at = redis.call('ZRANGE', k.holders, 0, 0, 'WITHSCORES')[2]
  end
  if not at then return wake_in(k, now) end
  return until_ms(at, now)
end

local function granted_fence(k, lock_id)
  local raw = redis.call('HGET', k.locks, lock_id)
  if not raw then return nil end
  return cjson.decode(raw).fence
end

-- acquire_many callers hold nothing while they wait. They register, per resource that
-- refused them, in the watch set of the mode they need (oldest first), and are let in
-- turn by turn: after a change that may admit them (a release, a withdrawal, a lapse)
-- the oldest watcher of each mode the resource now admits is posted a turn and leaves
-- the set; a watcher that tries (granted or refused again) passes the turn on the same
-- way while the resource still admits that mode. A caller registers again only where
-- it was refused, so never on a resource it passes a turn on: each registration gets
-- at most one turn, a change costs one try at a time instead of one per watcher, and
-- the turns cannot go round in a loop.
local function watch_key(k, mode)
  if mode == 'read' then return k.watch_read end
  return k.watch_write
end

local function nudge_watchers(k)
  if redis.call('EXISTS', k.queue, k.writer) > 0 then return end
  local sets = {k.watch_read}
  if redis.call('EXISTS', k.holders) == 0 then sets[2] = k.watch_write end
  for _, key in ipairs(sets) do
    local box = redis.call('ZRANGE', key, 0, 0)[1]
    if box then
      redis.call('ZREM', key, box)
      post(box, 'n')
    end
  end
end
