--[[
  Look for a wait-for cycle through a waiting owner. An owner waits for the owners of
  the resource's live holders and of the requests queued ahead of it (FIFO: those go
  first). If a cycle comes back to the start, its youngest waiter is chosen as the
  victim; when that is someone else, the victim is told through its mailbox.

  KEYS[1]  wait-for edges (HASH owner -> JSON {base, waiter, since, resource, holder, mode})
  ARGV[1]  owner to start from
  ARGV[2]  most owners to visit

  Returns "" (no cycle) or JSON {victim = waiter id, cycle = [{owner, holder, resource,
  mode, waiter, since}, ...]} listing the cycle from the start owner.
]]
--!include lock_lib

local now = now_ms()
local start = ARGV[1]
local limit = tonumber(ARGV[2])

local function edge_of(owner)
  local raw = redis.call('HGET', KEYS[1], owner)
  if not raw then return nil end
  local e = cjson.decode(raw)
  local k = rkeys(e.base)
  local seq = redis.call('ZSCORE', k.queue, e.waiter)
  if not seq then return nil end
  local ahead = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holders, now, '+inf')) do
    local l = redis.call('HGET', k.locks, id)
    if l then table.insert(ahead, cjson.decode(l).owner) end
  end
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.queue, '-inf', '(' .. seq)) do
    local w = redis.call('HGET', k.waiters, id)
    if w then table.insert(ahead, cjson.decode(w).owner) end
  end
  e.owner = owner
  e.blockers = ahead
  return e
end

local first = edge_of(start)
if not first then return '' end
local parent = {[start] = false}
local edges = {[start] = first}
local frontier = {start}
local visited = 1
local closing = nil
while #frontier > 0 and not closing and visited <= limit do
  local nxt = {}
  for _, owner in ipairs(frontier) do
    local e = edges[owner]
    for _, b in ipairs(e.blockers) do
      if b == start then closing = owner; break end
      if parent[b] == nil then
        local be = edge_of(b)
        parent[b] = owner
        visited = visited + 1
        if be then edges[b] = be; table.insert(nxt, b) end
      end
    end
    if closing then break end
  end
  frontier = nxt
end
if not closing then return '' end

local cycle = {}
local node = closing
while node do
  local e = edges[node]
  table.insert(cycle, 1, {owner = node, holder = e.holder, resource = e.resource,
    mode = e.mode, waiter = e.waiter, since = e.since})
  node = parent[node]
end
local victim = cycle[1]
for _, c in ipairs(cycle) do
  -- youngest = latest to start waiting; ties broken by id so every checker agrees
  if c.since > victim.since or (c.since == victim.since and c.waiter > victim.waiter) then victim = c end
end
local report = cjson.encode({victim = victim.waiter, cycle = cycle})
if victim.owner ~= start then
  post(mailbox(rkeys(edges[victim.owner].base), victim.waiter), 'd:' .. report)
end
return report
