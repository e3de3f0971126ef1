--[[
  Take several resources all-or-nothing: every one is granted in this step, or none
  is. A caller that gets nothing holds nothing while it waits (no hold-and-wait, so no
  deadlock); it registers its mailbox as a watcher of each resource that refused it
  and is posted a turn when one of them may admit it (see nudge_watchers in lock_lib).
  It never jumps requests already queued there.

  KEYS[1]  resource registry
  KEYS[2]  lock index
  KEYS[3]  wait-for edges (only cleaned here)
  KEYS[4..] resource base keys, one per requested resource
  ARGV[1]  owner
  ARGV[2]  holder id
  ARGV[3]  lease in ms
  ARGV[4]  the caller's mailbox key (its watcher registration)
  ARGV[5]  "watch": try, and register where refused | "try": try once, registered
           nowhere | "leave": only withdraw the registrations (the caller gives up)
  ARGV[6..] triples: resource id, lock id, mode (in KEYS[4..] order)

  Every outcome first removes the caller's earlier registrations and then passes on
  the turn it may have been given (nudge_watchers) where the resource still admits others,
  so a turn is never lost with a caller that got what it wanted or gave up.
  O(k log n) for k requested resources.

  Returns {"granted", fence...} | {"busy", wake_in_ms} | {"unknown", resource_id}
        | {"left"}
]]
--!include lock_lib

local now = now_ms()
local n = #KEYS - 3
local box, how = ARGV[4], ARGV[5]
local reqs = {}
for i = 1, n do
  local j = 6 + (i - 1) * 3
  reqs[i] = {k = rkeys(KEYS[3 + i]), resource = ARGV[j], lock_id = ARGV[j + 1], mode = ARGV[j + 2]}
  if how ~= 'leave' and redis.call('HEXISTS', KEYS[1], reqs[i].resource) == 0 then
    return {'unknown', reqs[i].resource}
  end
end

-- A call retried after its reply was lost (connection dropped) finds its own grant.
if how ~= 'leave' and granted_fence(reqs[1].k, reqs[1].lock_id) then
  local out = {'granted'}
  for _, r in ipairs(reqs) do
    local fence = granted_fence(r.k, r.lock_id)
    if not fence then break end  -- one of them lapsed since: not a retry to answer
    table.insert(out, fence)
  end
  if #out == n + 1 then return out end
end

for _, r in ipairs(reqs) do
  redis.call('ZREM', watch_key(r.k, r.mode), box)
end

if how == 'leave' then
  for _, r in ipairs(reqs) do nudge_watchers(r.k) end
  return {'left'}
end

local refused = {}
local wake = -1
for _, r in ipairs(reqs) do
  if purge(r.k, KEYS[2], KEYS[3], now) then promote(r.k, KEYS[2], KEYS[3], now) end
  if redis.call('EXISTS', r.k.queue) == 1 or not compatible(r.k, r.mode) then
    table.insert(refused, r)
    local w = wake_in(r.k, now)
    if w >= 0 and (wake < 0 or w < wake) then wake = w end
  end
end

if #refused == 0 then
  local out = {'granted'}
  for _, r in ipairs(reqs) do
    table.insert(out, grant(r.k, KEYS[2], r.lock_id, {resource = r.resource, holder = ARGV[2],
      mode = r.mode, owner = ARGV[1], lease = tonumber(ARGV[3])}, now))
  end
  for _, r in ipairs(reqs) do nudge_watchers(r.k) end
  return out
end

for _, r in ipairs(reqs) do nudge_watchers(r.k) end
if how == 'watch' then
  for _, r in ipairs(refused) do
    local key = watch_key(r.k, r.mode)
    redis.call('ZADD', key, redis.call('INCR', r.k.seq), box)
    redis.call('PEXPIRE', key, MAILBOX_TTL_MS)
  end
end
return {'busy', wake}
