--[[
  state_apply: every transition that changes one agent's state, in one script so that
  each runs atomically and shares the same write / version / change-log code.

  Input:
    KEYS[1]  data       agent state hash: leaf path -> JSON text (never decoded here)
    KEYS[2]  versions   path -> state version of the last write at or below that path
    KEYS[3]  meta       hash: "version" (state version), "seq" (proposal counter)
    KEYS[4]  pending    sorted set of pending change ids by arrival sequence
    KEYS[5]  log        change log stream (one entry per applied change)
    KEYS[6]  resolvers  path -> JSON {strategy, priority_order}
    KEYS[7]  modvers    module id -> number of applied changes
    KEYS[8]  stats      counters: total_changes, conflicts_resolved, sync_operations
    KEYS[9]  baseline   the state as first mirrored in (target of RESET)
    KEYS[10] scratch    rehearsal copy for all-or-nothing modes
    KEYS[11] snapdata   (restore) the snapshot's state hash
    KEYS[12] snapinfo   (restore) snapshot id -> JSON info
    ARGV[1]  mode: "batch" | "atomic" | "init" | "restore"
    ARGV[2]  change key prefix (<base>:change:)
    ARGV[3]  wake-up channel
    ARGV[4]  fence key, or "" (atomic, restore)
    ARGV[5]  fencing token of the writer
    ARGV[6]  seconds an outcome record is kept
    ARGV[7]  approximate maximum length of the change log
    ARGV[8]  payload JSON
             batch:   {limit, only: [ids] | null, decisions: {path: {considered: [ids],
                       apply: [{id} | {change_id, module, type, leaves, meta}]}}}
             atomic:  [change, ...] with change = {id, module, path, type, leaves,
                       priority, expected | null, meta, tx, baseline}
             init:    [{id, path, leaves}, ...] (top-level entries of a mirrored object)
             restore: {id: base id for the log entries}
    ARGV[9]  (restore) snapshot id

  Transitions:
    batch    pending -> applied | superseded | rejected for the oldest `limit` pending
             changes (or only the listed ones). Changes to one path are a conflict,
             settled by the path's strategy; a stale expected_version or fence rejects.
             Paths with a "custom" strategy are settled only by a caller's decision.
    atomic   all listed changes apply in order, or none does: versions are compared
             first, then the changes are rehearsed on a scratch copy that replaces the
             state only if every one of them applied. A repeat of a call whose changes
             already applied (its reply was lost) returns the first call's answer.
    init     each top-level entry absent from the state is created (nothing present
             is overwritten); the first init also records the baseline.
    restore  the state becomes the snapshot's copy; one RESET entry per changed
             top-level key; pending changes are rejected (they targeted the old state).
  Every applied change bumps the state version, stamps it on its path and the path's
  ancestors, is appended to the log and the channel gets a PUBLISH.

  A change's record (<base>:change:<id>) is a hash while it is pending (what
  state_propose stored); its outcome replaces it with one string, a JSON array
  [status, reason, version | null, path, module], kept ARGV[6] seconds (one allocation
  instead of a hash's: a long simulation keeps one per change). A hash holding
  status/version is an outcome an earlier version wrote, still read.

  Output:
    batch    {applied, conflicts, still pending, id, status, reason, version, ...}
    atomic   {"ok", id, version, ...} | {"conflict", detail, ...} | {"rejected", detail}
    init     number of entries created
    restore  number of log entries written; error "NOSNAPSHOT <id>" if unknown
    A stale fence on atomic/restore is an error reply "FENCED <key> latest=<n> token=<t>".
]]
local DATA, VERS, META, PENDING, LOG = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local RESOLVERS, MODVERS, STATS, BASELINE, SCRATCH = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local MODE, CHANGE, CHANNEL = ARGV[1], ARGV[2], ARGV[3]
local FENCE_KEY, FENCE_TOKEN = ARGV[4], ARGV[5]
local TTL, MAXLEN = tonumber(ARGV[6]), tonumber(ARGV[7])

local clock = redis.call('TIME')
local NOW_MS = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- paths -----------------------------------------------------------------------------
local function under(f, p) return string.sub(f, 1, #p + 1) == p .. '.' end
local function full(path, rel) if rel == '' then return path end return path .. '.' .. rel end
local function ancestors(path)
  local out, i = {}, 0
  while true do
    i = string.find(path, '.', i + 1, true)
    if not i then return out end
    out[#out + 1] = string.sub(path, 1, i - 1)
  end
end

-- the leaves of `path` in hash h: {relative path -> JSON}, count
local function subtree(h, path)
  local v = redis.call('HGET', h, path)
  if v then return {[''] = v}, 1 end
  local out, n, pre = {}, 0, path .. '.'
  local all = redis.call('HGETALL', h)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, #pre) == pre then
      out[string.sub(all[i], #pre + 1)] = all[i + 1]
      n = n + 1
    end
  end
  return out, n
end

-- an ancestor stored as a leaf other than '{}' is a value a write must not overwrite
local function blocking_ancestor(h, path)
  for _, a in ipairs(ancestors(path)) do
    local v = redis.call('HGET', h, a)
    if v and v ~= '{}' then return a end
  end
  return nil
end

-- a deleted key leaves its parent as an empty object, not as nothing
local function keep_parent(h, path)
  local anc = ancestors(path)
  local p = anc[#anc]
  if not p or redis.call('HEXISTS', h, p) == 1 then return end
  local _, n = subtree(h, p)
  if n == 0 then redis.call('HSET', h, p, '{}') end
end

local function merge_leaf(h, path, ex, rel, v)
  if rel == '' then  -- merging an empty dict: only creates the object if absent
    if next(ex) == nil then redis.call('HSET', h, path, '{}'); ex[''] = '{}' end
    return
  end
  if v == '{}' then
    for k in pairs(ex) do if under(k, rel) then return end end
  end
  if ex[''] then redis.call('HDEL', h, path); ex[''] = nil end
  for _, a in ipairs(ancestors(rel)) do
    if ex[a] then redis.call('HDEL', h, full(path, a)); ex[a] = nil end
  end
  for k in pairs(ex) do
    if under(k, rel) then redis.call('HDEL', h, full(path, k)); ex[k] = nil end
  end
  redis.call('HSET', h, full(path, rel), v)
  ex[rel] = v
end

-- apply change c to hash h; returns old, new leaves, or nil, reason (nothing written)
local function perform(h, c, merging)
  local path, ctype, leaves = c.path, c.type, c.leaves
  local old, n = subtree(h, path)
  if ctype == 'create' and n > 0 then return nil, 'exists' end
  if ctype == 'delete' and n == 0 then return nil, 'missing' end
  if ctype == 'reset' and c.baseline then leaves = subtree(BASELINE, path) end
  if ctype == 'delete' or (ctype == 'reset' and next(leaves) == nil) then
    for rel in pairs(old) do redis.call('HDEL', h, full(path, rel)) end
    if n > 0 then keep_parent(h, path) end
    return old, {}
  end
  local blocked = blocking_ancestor(h, path)
  if blocked then return nil, 'not_object: ' .. blocked .. ' holds a value that is not an object' end
  if ctype == 'merge' and old[''] and old[''] ~= '{}' then
    return nil, 'not_object: ' .. path .. ' holds a value that is not an object'
  end
  for _, a in ipairs(ancestors(path)) do redis.call('HDEL', h, a) end
  if ctype == 'merge' or (merging and leaves[''] == nil) then
    local ex = {}
    if old[''] then redis.call('HDEL', h, path) else for k, v in pairs(old) do ex[k] = v end end
    for rel, v in pairs(leaves) do merge_leaf(h, path, ex, rel, v) end
  else
    for rel in pairs(old) do redis.call('HDEL', h, full(path, rel)) end
    for rel, v in pairs(leaves) do redis.call('HSET', h, full(path, rel), v) end
  end
  return old, (subtree(h, path))
end

-- versions and the change log ---------------------------------------------------------
local function path_version(path)
  local best = tonumber(redis.call('HGET', VERS, path) or '0')
  for _, a in ipairs(ancestors(path)) do
    local v = tonumber(redis.call('HGET', VERS, a) or '0')
    if v > best then best = v end
  end
  return best
end

local published = false
local function record(c, old, new)
  local v = redis.call('HINCRBY', META, 'version', 1)
  redis.call('HSET', VERS, c.path, v)
  for _, a in ipairs(ancestors(c.path)) do redis.call('HSET', VERS, a, v) end
  redis.call('HINCRBY', MODVERS, c.module, 1)
  redis.call('XADD', LOG, 'MAXLEN', '~', MAXLEN, '*',
    'id', c.id, 'module', c.module, 'path', c.path, 'type', c.type, 'version', v,
    'old', cjson.encode(old), 'new', cjson.encode(new), 'priority', tostring(c.priority or 0),
    'ts', tostring(NOW_MS), 'meta', c.meta or '{}', 'tx', c.tx or '')
  published = true
  return v
end

local function outcome(c, status, reason, version)
  redis.call('SET', CHANGE .. c.id, cjson.encode({status, reason or '', version or cjson.null, c.path or '',
    c.module or ''}), 'EX', TTL)
end

-- The status and version a change's record holds, or nil: read back from Redis, so a
-- record that is neither form is taken as no outcome.
local function recorded(id)
  local k = CHANGE .. id
  local kind = redis.call('TYPE', k).ok
  if kind == 'string' then
    local ok, v = pcall(cjson.decode, redis.call('GET', k))
    if ok and type(v) == 'table' and type(v[1]) == 'string' then return v[1], tonumber(v[3]) end
  elseif kind == 'hash' then
    local f = redis.call('HMGET', k, 'status', 'version')
    return f[1] or nil, tonumber(f[2])
  end
  return nil
end

local function check_fence()
  if FENCE_KEY ~= '' then
    local latest = tonumber(redis.call('GET', FENCE_KEY) or '0')
    if latest > tonumber(FENCE_TOKEN) then
      return 'FENCED ' .. FENCE_KEY .. ' latest=' .. latest .. ' token=' .. FENCE_TOKEN
    end
  end
  return nil
end

local function finish_publish()
  if published then redis.call('PUBLISH', CHANNEL, redis.call('HGET', META, 'version')) end
end

-- modes -----------------------------------------------------------------------------
if MODE == 'batch' then
  local p = cjson.decode(ARGV[8])
  local ids = redis.call('ZRANGE', PENDING, 0, p.limit - 1)
  local only = nil
  if type(p.only) == 'table' then
    only = {}
    for _, id in ipairs(p.only) do only[id] = true end
  end
  local decisions = type(p.decisions) == 'table' and p.decisions or {}

  local groups, order = {}, {}
  for _, id in ipairs(ids) do
    if not only or only[id] then
      local raw = redis.pcall('HGETALL', CHANGE .. id)
      if raw.err or #raw == 0 then
        -- Record gone, or not a pending one (cannot happen unless changed by hand).
        redis.call('ZREM', PENDING, id)
      else
        local r = {}
        for i = 1, #raw, 2 do r[raw[i]] = raw[i + 1] end
        local c = {id = id, module = r.module, path = r.path, type = r.type,
          leaves = cjson.decode(r.leaves), priority = tonumber(r.priority or '0'),
          seq = tonumber(r.seq), meta = r.meta, fkey = r.fkey, ftok = r.ftok,
          baseline = r.baseline == '1', tx = ''}
        if r.expected and r.expected ~= '' then c.expected = tonumber(r.expected) end
        if not groups[c.path] then groups[c.path] = {}; order[#order + 1] = c.path end
        table.insert(groups[c.path], c)
      end
    end
  end

  local results, applied, conflicts = {}, 0, 0
  local function finish(c, status, reason, version)
    outcome(c, status, reason, version)
    redis.call('ZREM', PENDING, c.id)
    results[#results + 1] = c.id
    results[#results + 1] = status
    results[#results + 1] = reason or ''
    results[#results + 1] = version or ''
  end
  local function try_apply(c, merging)
    if c.fkey and c.fkey ~= '' then
      local latest = tonumber(redis.call('GET', c.fkey) or '0')
      if latest > tonumber(c.ftok) then
        finish(c, 'rejected', 'fenced: a newer lock holder exists (latest token ' .. latest
          .. ', change carried ' .. c.ftok .. ')')
        return nil
      end
    end
    -- Compare-and-set against the version now, not the group's version read before
    -- any of it applied: two merges expecting one version must not both apply.
    if c.expected then
      local current = path_version(c.path)
      if c.expected ~= current then
        finish(c, 'rejected', 'version_conflict: expected version ' .. c.expected .. ' of ' .. c.path
          .. ', found ' .. current)
        return nil
      end
    end
    local old, new = perform(DATA, c, merging)
    if not old then finish(c, 'rejected', new); return nil end
    local v = record(c, old, new)
    finish(c, 'applied', '', v)
    applied = applied + 1
    return v
  end
  local function resolver_for(path)
    local r = redis.call('HGET', RESOLVERS, path)
    if not r then
      local anc = ancestors(path)
      for i = #anc, 1, -1 do
        r = redis.call('HGET', RESOLVERS, anc[i])
        if r then break end
      end
    end
    if r then return cjson.decode(r) end
    return nil
  end
  local function preference(strategy, priority_order)
    local rank, worst = {}, 1
    if type(priority_order) == 'table' then
      for i, m in ipairs(priority_order) do if rank[m] == nil then rank[m] = i end end
      worst = #priority_order + 1
    end
    return function(a, b)
      if strategy ~= 'latest_wins' then
        local ra, rb = rank[a.module] or worst, rank[b.module] or worst
        if ra ~= rb then return ra < rb end
        if a.priority ~= b.priority then return a.priority > b.priority end
      end
      return a.seq > b.seq
    end
  end

  for _, path in ipairs(order) do
    local group = groups[path]
    local r = resolver_for(path)
    local strategy = (r and r.strategy) or 'priority'
    if strategy == 'custom' then
      local d = decisions[path]
      if d then
        local byid = {}
        for _, c in ipairs(group) do byid[c.id] = c end
        local intact = true
        for _, id in ipairs(d.considered) do if not byid[id] then intact = false end end
        -- a decision over changes another applier already settled is stale: the
        -- remaining ones stay pending for the next round
        if intact then
          if #d.considered > 1 then conflicts = conflicts + 1 end
          local winner = nil
          for _, a in ipairs(d.apply) do
            local c = a.id and byid[a.id]
            if c then
              byid[a.id] = false
              if try_apply(c, false) then winner = winner or c.id end
            elseif a.change_id then
              local s = {id = a.change_id, module = a.module, path = path, type = a.type,
                leaves = a.leaves, priority = 0, meta = a.meta, tx = ''}
              if try_apply(s, false) then winner = winner or s.id end
            end
          end
          for _, id in ipairs(d.considered) do
            if byid[id] then
              finish(byid[id], 'superseded', 'custom resolver chose ' .. (winner or 'none'))
            end
          end
        end
      end
    else
      if #group > 1 then conflicts = conflicts + 1 end
      local current = path_version(path)
      local live = {}
      for _, c in ipairs(group) do
        if c.expected and c.expected ~= current then
          finish(c, 'rejected', 'version_conflict: expected version ' .. c.expected
            .. ' of ' .. path .. ', found ' .. current)
        else
          live[#live + 1] = c
        end
      end
      if strategy == 'merge' then
        for _, c in ipairs(live) do try_apply(c, true) end
      else
        table.sort(live, preference(strategy, r and r.priority_order))
        local winner = nil
        for _, c in ipairs(live) do
          if winner then finish(c, 'superseded', 'superseded by ' .. winner)
          elseif try_apply(c, false) then winner = c.id end
        end
      end
    end
  end

  if #results > 0 then
    redis.call('HINCRBY', STATS, 'total_changes', applied)
    redis.call('HINCRBY', STATS, 'conflicts_resolved', conflicts)
    redis.call('HINCRBY', STATS, 'sync_operations', 1)
  end
  finish_publish()
  local out = {applied, conflicts, redis.call('ZCARD', PENDING)}
  for _, x in ipairs(results) do out[#out + 1] = x end
  return out

elseif MODE == 'atomic' then
  local changes = cjson.decode(ARGV[8])
  -- A call sent again after its reply was lost (the client's retry policy does that)
  -- finds its changes applied: answer as the first call did, apply nothing twice.
  if changes[1] and recorded(changes[1].id) == 'applied' then
    local out = {'ok'}
    for _, c in ipairs(changes) do
      local _, version = recorded(c.id)
      out[#out + 1] = c.id
      out[#out + 1] = version or false  -- nil would end the reply list early
    end
    return out
  end
  local fenced = check_fence()
  if fenced then return redis.error_reply(fenced) end
  local stale = {'conflict'}
  for _, c in ipairs(changes) do
    if type(c.expected) == 'number' then
      local current = path_version(c.path)
      if c.expected ~= current then
        stale[#stale + 1] = c.path .. ' (expected version ' .. c.expected .. ', found ' .. current .. ')'
      end
    end
  end
  if #stale > 1 then return stale end
  if redis.call('EXISTS', DATA) == 1 then
    redis.call('COPY', DATA, SCRATCH, 'REPLACE')
  else
    redis.call('DEL', SCRATCH)
  end
  local done = {}
  for i, c in ipairs(changes) do
    c.baseline = c.baseline == true
    local old, new = perform(SCRATCH, c, false)
    if not old then
      redis.call('DEL', SCRATCH)
      return {'rejected', c.path .. ': ' .. new}
    end
    done[i] = {old, new}
  end
  if redis.call('EXISTS', SCRATCH) == 1 then
    redis.call('RENAME', SCRATCH, DATA)
  else
    redis.call('DEL', DATA)
  end
  local out = {'ok'}
  for i, c in ipairs(changes) do
    local v = record(c, done[i][1], done[i][2])
    outcome(c, 'applied', '', v)
    out[#out + 1] = c.id
    out[#out + 1] = v
  end
  redis.call('HINCRBY', STATS, 'total_changes', #changes)
  redis.call('HINCRBY', STATS, 'sync_operations', 1)
  finish_publish()
  return out

elseif MODE == 'init' then
  local created = 0
  for _, c in ipairs(cjson.decode(ARGV[8])) do
    local _, n = subtree(DATA, c.path)
    if n == 0 then
      c.type, c.module, c.meta, c.tx = 'create', 'mirror', '{}', ''
      local old, new = perform(DATA, c, false)
      if old then record(c, old, new); created = created + 1 end
    end
  end
  if redis.call('EXISTS', BASELINE) == 0 and redis.call('EXISTS', DATA) == 1 then
    redis.call('COPY', DATA, BASELINE)
  end
  if created > 0 then redis.call('HINCRBY', STATS, 'total_changes', created) end
  finish_publish()
  return created

elseif MODE == 'restore' then
  local SNAPDATA, SNAPINFO, sid = KEYS[11], KEYS[12], ARGV[9]
  if redis.call('HEXISTS', SNAPINFO, sid) == 0 then return redis.error_reply('NOSNAPSHOT ' .. sid) end
  local fenced = check_fence()
  if fenced then return redis.error_reply(fenced) end
  local base_id = cjson.decode(ARGV[8]).id
  local function by_top(h)
    local groups, all = {}, redis.call('HGETALL', h)
    for i = 1, #all, 2 do
      local f = all[i]
      local dot = string.find(f, '.', 1, true)
      local top, rest = f, ''
      if dot then top, rest = string.sub(f, 1, dot - 1), string.sub(f, dot + 1) end
      groups[top] = groups[top] or {}
      groups[top][rest] = all[i + 1]
    end
    return groups
  end
  local function same(a, b)
    for k, v in pairs(a) do if b[k] ~= v then return false end end
    for k in pairs(b) do if a[k] == nil then return false end end
    return true
  end
  local before, after = by_top(DATA), by_top(SNAPDATA)
  if redis.call('EXISTS', SNAPDATA) == 1 then
    redis.call('COPY', SNAPDATA, DATA, 'REPLACE')
  else
    redis.call('DEL', DATA)
  end
  local tops = {}
  for k in pairs(before) do tops[#tops + 1] = k end
  for k in pairs(after) do if before[k] == nil then tops[#tops + 1] = k end end
  table.sort(tops)
  local written = 0
  for _, top in ipairs(tops) do
    local old, new = before[top] or {}, after[top] or {}
    if not same(old, new) then
      record({id = base_id .. ':' .. top, module = 'system_restore', path = top, type = 'reset',
        priority = 0, meta = cjson.encode({snapshot = sid}), tx = ''}, old, new)
      written = written + 1
    end
  end
  local pending = redis.call('ZRANGE', PENDING, 0, -1)
  for _, id in ipairs(pending) do
    local f = redis.pcall('HMGET', CHANGE .. id, 'path', 'module')
    if f.err then f = {} end
    outcome({id = id, path = f[1] or nil, module = f[2] or nil}, 'rejected', 'snapshot_restored: ' .. sid, nil)
  end
  redis.call('DEL', PENDING)
  redis.call('HINCRBY', STATS, 'total_changes', written)
  redis.call('HINCRBY', STATS, 'rollbacks_performed', 1)
  finish_publish()
  return written
end
return redis.error_reply('ERR state_apply: unknown mode ' .. tostring(MODE))
