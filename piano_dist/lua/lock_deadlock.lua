--[[
  Look for a wait-for cycle through a waiting owner. If one comes back to the start, its
  youngest waiter is chosen as the victim; when that is someone else, the victim is told
  through its mailbox.

  The search follows holder edges only: an owner queued on a resource waits for the
  owners of its live holders. It also waits for the requests queued ahead of it (FIFO),
  but those wait on the same resource, for its holders and for requests further ahead,
  so every path through them reaches a holder of that resource before it can leave it:
  a cycle through a request queued ahead implies a cycle through a holder, found here.
  Only holders can break a cycle (by releasing), so the victim is always one of them;
  and no step reads the queue, whatever its length.

  The search reads at most ARGV[2] records (a wait-for edge, a queue place with the
  holders' list, a holder's record each count one); a cycle it cannot reach within
  that (very long, or through resources held by hundreds of readers) is not reported,
  and the waiters' timeouts end it instead.

  KEYS[1]  wait-for edges (HASH owner -> JSON {base, waiter, since, resource, holder, mode})
  ARGV[1]  owner to start from
  ARGV[2]  most records to read

  Returns "" (no cycle) or JSON {victim = waiter id, cycle = [{owner, holder, resource,
  mode, waiter, since}, ...]} listing the cycle from the start owner.
]]
--!include lock_lib

local now = now_ms()
local start = ARGV[1]
local budget = tonumber(ARGV[2])

-- What an owner waits on, or nil (not waiting, or out of budget).
local function edge_of(owner)
  if budget <= 0 then return nil end
  budget = budget - 1
  local raw = redis.call('HGET', KEYS[1], owner)
  if not raw then return nil end
  local e = cjson.decode(raw)
  e.owner = owner
  return e
end

-- Owners of the live holders of the resource an edge waits on; none if the request is
-- no longer queued there (a stale edge) or the budget is spent.
local function blockers_of(e)
  if budget < 2 then return {} end
  budget = budget - 2
  local k = rkeys(e.base)
  if not redis.call('ZSCORE', k.queue, e.waiter) then return {} end
  local owners = {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k.holders, now, '+inf', 'LIMIT', 0, budget)) do
    budget = budget - 1
    local l = redis.call('HGET', k.locks, id)
    if l then table.insert(owners, cjson.decode(l).owner) end
  end
  return owners
end

local first = edge_of(start)
if not first then return '' end
local parent = {[start] = false}
local edges = {[start] = first}
local frontier = {start}
local closing = nil
while #frontier > 0 and not closing and budget > 0 do
  local nxt = {}
  for _, owner in ipairs(frontier) do
    for _, b in ipairs(blockers_of(edges[owner])) do
      if b == start then closing = owner; break end
      if parent[b] == nil then
        parent[b] = owner
        local be = edge_of(b)
        if be then edges[b] = be; table.insert(nxt, b) end
      end
    end
    if closing or budget <= 0 then break end
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
