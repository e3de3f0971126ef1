--[[
  Take several resources all-or-nothing: every one is granted in this step, or none
  is. A caller that gets nothing holds nothing while it waits (no hold-and-wait, so no
  deadlock); it registers its mailbox as a watcher of each resource and is nudged
  when any of them frees up. It never jumps requests already queued there.

  KEYS[1]  resource registry
  KEYS[2]  lock index
  KEYS[3]  wait-for edges (only cleaned here)
  KEYS[4..] resource base keys, one per requested resource
  ARGV[1]  owner
  ARGV[2]  holder id
  ARGV[3]  lease in ms
  ARGV[4]  watcher mailbox key, or "" to only try
  ARGV[5..] triples: resource id, lock id, mode (in KEYS[4..] order)

  Returns {"granted", fence...} | {"busy", wake_in_ms} | {"unknown", resource_id}
]]
--!include lock_lib

local now = now_ms()
local n = #KEYS - 3
local reqs = {}
for i = 1, n do
  local j = 5 + (i - 1) * 3
  reqs[i] = {k = rkeys(KEYS[3 + i]), resource = ARGV[j], lock_id = ARGV[j + 1], mode = ARGV[j + 2]}
  if redis.call('HEXISTS', KEYS[1], reqs[i].resource) == 0 then return {'unknown', reqs[i].resource} end
end

local blocked = false
local wake = -1
for _, r in ipairs(reqs) do
  if purge(r.k, KEYS[2], KEYS[3], now) then promote(r.k, KEYS[2], KEYS[3], now) end
  if redis.call('ZCARD', r.k.queue) > 0 or not compatible(r.k, r.mode) then
    blocked = true
    local w = wake_in(r.k, now)
    if w >= 0 and (wake < 0 or w < wake) then wake = w end
  end
end

if blocked then
  if ARGV[4] ~= '' then
    for _, r in ipairs(reqs) do
      redis.call('SADD', r.k.watchers, ARGV[4])
      redis.call('PEXPIRE', r.k.watchers, MAILBOX_TTL_MS)
    end
  end
  return {'busy', wake}
end

local out = {'granted'}
for _, r in ipairs(reqs) do
  table.insert(out, grant(r.k, KEYS[2], r.lock_id, {resource = r.resource, holder = ARGV[2],
    mode = r.mode, owner = ARGV[1], lease = tonumber(ARGV[3])}, now))
end
return out
