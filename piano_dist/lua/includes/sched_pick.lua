--[[
  Policy pickers for task_claim (included there, after its locals): each returns the
  next task to start as (queue index, id, fields) without removing it, or nil.
  See docs/scheduling.md for the guarantees each one gives.

  Uses task_claim's locals: ts, window, budget, skip, FIELDS, hold, park_from,
  is_paused, unstartable, origin_of, policy_cfg (HMGET of <prefix>:sched policy,
  aging_ms, fairness, indexed).
]]

local QUOTAS = SCHED .. ':quota'
local MODULE_RUNNING = SCHED .. ':running'

-- A module at its quota starts nothing more until one of its runs ends.
local function at_quota(module)
  local quota = tonumber(redis.call('HGET', QUOTAS, module) or '')
  if not quota then return false end
  return tonumber(redis.call('HGET', MODULE_RUNNING, module) or '0') >= quota
end

-- First startable task of one queue, looking past at most `window` left-in-place ones
-- (modules at their quota): stale entries are dropped, a paused module's tasks set aside
-- and tasks this worker cannot start parked, as PRIORITY_FIRST does.
local function first_ready(qkey, blocked)
  local pos, skipped = 0, 0
  while skipped <= window and budget > 0 do
    local id = redis.call('LINDEX', qkey, pos)
    if not id then return nil end
    local f = redis.call('HMGET', job_key(id), unpack(FIELDS))
    local why = f[1] == 'queued' and f[2] and unstartable(f[2])
    if f[1] ~= 'queued' or not f[2] then
      redis.call('LREM', qkey, 1, id)
      budget = budget - 1
    elseif is_paused(f[2]) then
      hold(qkey, id, f)
      budget = budget - 1
    elseif why then
      park_from(qkey, id, f, why)
      budget = budget - 1
    elseif blocked(f[2]) then
      pos = pos + 1
      skipped = skipped + 1
    else
      return id, f
    end
  end
  return nil
end

-- WEIGHTED_PRIORITY: the head of each queue competes with the virtual deadline
-- enqueue time + priority * aging; the earliest wins, ties to the more urgent queue.
-- So a task is overtaken only by more urgent tasks submitted less than
-- (its level - their level) * aging after it.
local function pick_weighted()
  local aging = tonumber(policy_cfg[2] or '') or 5000
  local fair = policy_cfg[3] == '1'
  local blocked = function(m) return fair and at_quota(m) end
  local best_qi, best_id, best_f, best_key
  for qi = 1, #KEYS do
    local id, f = first_ready(KEYS[qi], blocked)
    if id then
      local key = (tonumber(f[9] or '') or ts) + (tonumber(f[8] or '') or qi) * aging
      if not best_key or key < best_key then best_qi, best_id, best_f, best_key = qi, id, f, key end
    end
  end
  return best_qi, best_id, best_f
end

-- --- indexed policies: tasks listed per (queue, module) by sched_index ---------------
local function mods_key(qi) return SCHED .. ':mods:' .. origin_of(qi) end

-- Oldest still-queued task of `module` in queue qi, dropping stale index entries
-- (cancelled, set aside while paused, waiting out a retry delay: all re-indexed when queued again).
local function take_indexed(qi, module)
  local sub = SCHED .. ':q:' .. origin_of(qi) .. ':' .. module
  while true do
    local id = redis.call('LPOP', sub)
    if not id then
      redis.call('ZREM', mods_key(qi), module)
      return nil
    end
    local f = redis.call('HMGET', job_key(id), unpack(FIELDS))
    if f[1] == 'queued' and f[2] == module and redis.call('LREM', KEYS[qi], 1, id) == 1 then
      if redis.call('LLEN', sub) == 0 then redis.call('ZREM', mods_key(qi), module) end
      return id, f
    end
  end
end

-- Tasks of a module this worker cannot start are parked (a bounded number per call).
local function park_indexed(qi, module, why)
  while budget > 0 do
    local id, f = take_indexed(qi, module)
    if not id then return end
    park(id, origin_of(qi), module, why, false)
    budget = budget - 1
  end
end

-- Paused modules are left in place (not set aside): resume needs nothing more.
local function startable(qi, module)
  if is_paused(module) then return false end
  local why = unstartable(module)
  if why then
    park_indexed(qi, module, why)
    return false
  end
  return true
end

-- ROUND_ROBIN: strict priority between queues; within one, modules with queued work
-- take turns in name order after the queue's cursor (the module served last).
local function pick_round_robin()
  local cursors = SCHED .. ':rr'
  for qi = 1, #KEYS do
    local mods = redis.call('ZRANGE', mods_key(qi), 0, -1)
    if #mods > 0 then
      local cursor = redis.call('HGET', cursors, origin_of(qi)) or ''
      local start = 1
      for i, m in ipairs(mods) do
        if m > cursor then start = i; break end
      end
      for k = 0, #mods - 1 do
        local m = mods[(start - 1 + k) % #mods + 1]
        if startable(qi, m) then
          local id, f = take_indexed(qi, m)
          if id then
            redis.call('HSET', cursors, origin_of(qi), m)
            return qi, id, f, true
          end
        end
      end
    end
  end
  return nil
end

-- FAIR_SHARE: among modules with queued work and below their quota, the one with the
-- lowest running/quota (no quota: uncapped, weight 1) starts its most urgent task.
-- Ties go to the module whose work is more urgent, then by name.
local function pick_fair_share()
  local level_of, order = {}, {}
  for qi = 1, #KEYS do
    for _, m in ipairs(redis.call('ZRANGE', mods_key(qi), 0, -1)) do
      if not level_of[m] then level_of[m] = qi; order[#order + 1] = m end
    end
  end
  if #order == 0 then return nil end
  local quotas = redis.call('HMGET', QUOTAS, unpack(order))
  local running = redis.call('HMGET', MODULE_RUNNING, unpack(order))
  local candidates = {}
  for i, m in ipairs(order) do
    local quota, busy = tonumber(quotas[i] or ''), tonumber(running[i] or '0') or 0
    if startable(level_of[m], m) and (not quota or busy < quota) then
      candidates[#candidates + 1] = {m, busy / (quota or 1), level_of[m]}
    end
  end
  table.sort(candidates, function(a, b)
    if a[2] ~= b[2] then return a[2] < b[2] end
    if a[3] ~= b[3] then return a[3] < b[3] end
    return a[1] < b[1]
  end)
  for _, c in ipairs(candidates) do
    for qi = c[3], #KEYS do
      local id, f = take_indexed(qi, c[1])
      if id then return qi, id, f, true end
    end
  end
  return nil
end
