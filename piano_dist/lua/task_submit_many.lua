--[[
  Submit tasks in order, each as a submission of its own: queued, deferred behind
  unfinished parents, or at once dependency_failed when a parent already failed on an
  edge that does not allow it. A task may depend on an earlier task of the same call.
  A refused task stores nothing; the tasks after it are still submitted (the client
  checks a batch before sending it, so refusals here are races).

  KEYS     none: a task's keys derive from its id (see includes/task_common.lua), and a
           batch names hundreds of tasks.
  ARGV[1]  piano key prefix
  ARGV[2]  backlog limit (queued + deferred tasks); 0 = unbounded
  ARGV[3]  default result TTL in seconds, for a task that ends at once (its own
           result_ttl field wins)
  ARGV[4]  the submission: a token naming the client's submit call
  ARGV[5]  seconds this call's reply is kept under <P>:submitted:<submission>:<first task
           id>, and a repeat of the call answered from there (its reply was lost and the
           client's retry policy sent it again): nothing is stored twice, even a task
           that ended meanwhile and left no record (a result TTL of 0); a call that
           stored nothing keeps nothing
  ARGV[6]  JSON list field, value, field, value … : hash fields every task has
  ARGV[7]  JSON list of profiles, each [origin (RQ queue name of its priority), priority
           (1-5), module, field, value, …]: fields shared by tasks of one module, method
           and options
  ARGV[8]  P, the number of payloads; ARGV[9 … 8+2P] for each its `piano_payload` (JSON
           [args, kwargs]) and RQ `data` (zlib-compressed, so not carried in JSON)
  ARGV[9+2P …]  one per task, in order: JSON [id, created_at, profile number, payload
           number, parent ids, parent ids whose failure it tolerates, field, value, …]

  The task's hash gets ARGV[6]'s fields, its profile's, its payload's, its own, and its
  status fields.

  Returns the refusals only, flat: task number (1-based), message, … with message one of
  "UNKNOWN_DEPENDENCY <id>", "TASK_EXISTS <id>", "QUEUE_FULL <backlog>". A task not
  refused is queued, deferred or dependency_failed, as its hash says. A repeated call
  returns its first run's reply.

  What push_queued (includes/task_common.lua) does per task is done here once per call
  where it can be (TIME, stats counters, queue and scheduling-index pushes, wake-up
  tokens), and its ZREM from rq:deferred is left out (a new task was never deferred);
  keep the two in step.
]]
--!include task_common

local limit, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local npayloads = tonumber(ARGV[8])
local first_task = 9 + 2 * npayloads
local answered = P .. ':submitted:' .. ARGV[4] .. ':' .. cjson.decode(ARGV[first_task])[1]
local earlier = redis.call('GET', answered)
if earlier then return cjson.decode(earlier) end
local ts = now_ms()
local enqueued_at = iso(ts)
local backlog = tonumber(redis.call('HGET', STATS, 'backlog') or '0')
local indexed = redis.call('HGET', SCHED, 'indexed') == '1'

-- Each profile's fields after ARGV[6]'s, ready to copy into a task's HSET.
local common = cjson.decode(ARGV[6])
local profiles = cjson.decode(ARGV[7])
local bases = {}
for p, profile in ipairs(profiles) do
  local base = {}
  for j = 1, #common do base[j] = common[j] end
  for j = 4, #profile do base[#base + 1] = profile[j] end
  bases[p] = base
end

local refusals = {}
local submitted, added, runnable = 0, 0, 0
local by_priority, priority_order = {}, {}
local queued, queue_order = {}, {}    -- origin -> ids to RPUSH, in submission order
local subs, sub_order = {}, {}        -- origin:module -> {origin, module, ids} (scheduling index)

-- One task: nil, or the refusal message (nothing stored).
local function submit(t)
  local id, profile = t[1], profiles[t[3]]
  local origin, priority, module, parents = profile[1], profile[2], profile[3], t[5]
  local jk = job_key(id)
  if redis.call('EXISTS', jk) == 1 then return 'TASK_EXISTS ' .. id end
  if limit > 0 and backlog >= limit then return 'QUEUE_FULL ' .. backlog end
  local tolerated = {}
  for _, p in ipairs(t[6]) do tolerated[p] = true end

  -- Classify every parent before writing anything.
  local unfinished, failed_parent, failed_status, failed_reason = {}, nil, nil, nil
  for _, pid in ipairs(parents) do
    local f = redis.call('HMGET', job_key(pid), 'piano_status', 'piano_error', 'origin')
    local st = f[1]
    if not st or not owned(f[3]) then return 'UNKNOWN_DEPENDENCY ' .. pid end
    if not TERMINAL[st] then
      unfinished[#unfinished + 1] = pid
    elseif st ~= 'completed' and not tolerated[pid] and not failed_parent then
      failed_parent, failed_status, failed_reason = pid, st, f[2]
    end
  end

  local base = bases[t[3]]
  local fields = {}
  for j = 1, #base do fields[j] = base[j] end
  local n = #fields
  local p = 7 + 2 * t[4]  -- ARGV index of the payload's piano_payload
  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = 'piano_payload', ARGV[p], 'data', ARGV[p + 1]
  fields[n + 5], fields[n + 6] = 'created_at', t[2]
  n = n + 6
  for j = 7, #t do n = n + 1; fields[n] = t[j] end
  submitted = submitted + 1
  if not by_priority[priority] then priority_order[#priority_order + 1] = priority end
  by_priority[priority] = (by_priority[priority] or 0) + 1

  if failed_parent then
    fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = status_fields('deferred')
    redis.call('HSET', jk, unpack(fields))
    redis.call('HINCRBY', STATS, 'backlog', 1)  -- set_terminal takes it back
    local why = 'dependency ' .. failed_parent .. ' ended ' .. failed_status ..
      (failed_reason and (': ' .. failed_reason) or '')
    set_terminal(id, 'dependency_failed', why, ts, ttl)
    return nil
  end

  backlog = backlog + 1
  added = added + 1
  if #unfinished == 0 then
    -- push_queued(id, origin, ts, false) for a new task, its list pushes made at the end.
    fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = status_fields('queued')
    fields[n + 5], fields[n + 6], fields[n + 7], fields[n + 8] = 'enqueued_at', enqueued_at, 'piano_enq_ms', ts
    redis.call('HSET', jk, unpack(fields))
    local ids = queued[origin]
    if not ids then ids = {}; queued[origin] = ids; queue_order[#queue_order + 1] = origin end
    ids[#ids + 1] = id
    if indexed then
      local key = origin .. ':' .. module
      local sub = subs[key]
      if not sub then sub = {origin, module, {}}; subs[key] = sub; sub_order[#sub_order + 1] = key end
      sub[3][#sub[3] + 1] = id
    end
    publish('queued', id, {module = module})
    runnable = runnable + 1
    return nil
  end

  fields[n + 1], fields[n + 2], fields[n + 3], fields[n + 4] = status_fields('deferred')
  redis.call('HSET', jk, unpack(fields))
  -- In chunks: Lua's unpack() fails beyond ~8,000 values, after the HSET above.
  for i = 1, #unfinished, 1000 do
    redis.call('SADD', pending_key(id), unpack(unfinished, i, math.min(i + 999, #unfinished)))
  end
  for _, pid in ipairs(unfinished) do
    redis.call('SADD', children_key(pid), id)
  end
  redis.call('ZADD', 'rq:deferred:' .. origin, ts / 1000, id)
  publish('deferred', id, {module = module})
  return nil
end

for i = first_task, #ARGV do
  local refused = submit(cjson.decode(ARGV[i]))
  if refused then
    refusals[#refusals + 1] = i - first_task + 1
    refusals[#refusals + 1] = refused
  end
end

if submitted > 0 then
  redis.call('HINCRBY', STATS, 'submitted', submitted)
  for _, p in ipairs(priority_order) do
    redis.call('HINCRBY', SCHED .. ':stats', 'submitted:p:' .. p, by_priority[p])
  end
end
if added > 0 then redis.call('HINCRBY', STATS, 'backlog', added) end
for _, origin in ipairs(queue_order) do
  local qkey = 'rq:queue:' .. origin
  redis.call('RPUSH', qkey, unpack(queued[origin]))
  redis.call('SADD', 'rq:queues', qkey)
end
for _, key in ipairs(sub_order) do
  local sub = subs[key]
  redis.call('RPUSH', SCHED .. ':q:' .. sub[1] .. ':' .. sub[2], unpack(sub[3]))
  redis.call('ZADD', SCHED .. ':mods:' .. sub[1], 0, sub[2])
end
if runnable > 0 then
  -- wake(runnable): one token per newly runnable task, the list capped at 1000.
  local tokens = {}
  for j = 1, math.min(runnable, 1000) do tokens[j] = '1' end
  redis.call('RPUSH', WAKEUP, unpack(tokens))
  redis.call('LTRIM', WAKEUP, -1000, -1)
end
-- A call that stored nothing leaves nothing: its repeat is refused the same way, or
-- stores what it now can, and the client hears only the repeat.
if submitted > 0 then redis.call('SET', answered, cjson.encode(refusals), 'EX', tonumber(ARGV[5])) end
return refusals
