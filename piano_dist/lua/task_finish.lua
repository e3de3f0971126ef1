--[[
  Record the outcome of a run, if the run still owns the task (same worker and
  attempt, still running): a late result from a timed-out or re-queued run is refused.
  A task whose cancellation was requested ends cancelled and its result is dropped.
  A failed task with retries left goes back to its queue (or to the delayed set).
  Completion releases children; any other end settles descendants.

  KEYS[1]  rq:job:<id>
  ARGV[1]  piano key prefix
  ARGV[2]  task id
  ARGV[3]  worker name that ran it
  ARGV[4]  attempt number of that run
  ARGV[5]  outcome: completed | failed | timed_out
  ARGV[6]  result as JSON (completed) or error text (failed, timed_out)
  ARGV[7]  default result TTL seconds (0: nothing kept once the task ends); a task
           submitted with its own (piano_result_ttl) keeps that one
  ARGV[8]  execution time in milliseconds
  ARGV[9]  RQ result entry as JSON object (fields for rq:results:<id>), or ""
  ARGV[10] the RQ worker hash of that worker (rq:worker:<name>), or "": its finished /
           failed counts and working time, which `rq info` shows, are kept here so the
           worker makes no extra round trip per task
  ARGV[11] milliseconds the run waited on model calls (overlapping calls once), or ""
  ARGV[12] number of model calls the run made

  Returns {final status, released children count} or {"refused", current status}.
]]
--!include task_common

local id, worker, attempt = ARGV[2], ARGV[3], ARGV[4]
local outcome, payload, default_ttl, exec_ms = ARGV[5], ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local jk = KEYS[1]
local f = redis.call('HMGET', jk, 'piano_status', 'worker_name', 'piano_attempts', 'piano_cancel',
  'piano_retries_left', 'piano_retry_delay', 'origin', 'piano_keep_result', 'piano_result_ttl')
-- A task submitted with keep_result=False keeps its status, times and error, not its value.
local keep_result = f[8] ~= '0'
if f[1] ~= 'running' or f[2] ~= worker or f[3] ~= attempt then
  return {'refused', f[1] or 'missing'}
end
-- This task's own TTL; the default stays the default for the dependents it settles.
local ttl = own_ttl(f[9], default_ttl)
local ts = now_ms()
local wm = P .. ':worker:' .. worker .. ':metrics'
if ARGV[11] and ARGV[11] ~= '' then
  redis.call('HSET', jk, 'piano_model_ms', ARGV[11], 'piano_model_calls', ARGV[12])
end

-- RQ's per-worker figures; never recreate the hash of a worker that is already gone.
local function count_for_rq(succeeded)
  local rq_worker = ARGV[10]
  if rq_worker == nil or rq_worker == '' or redis.call('EXISTS', rq_worker) == 0 then return end
  redis.call('HINCRBY', rq_worker, succeeded and 'successful_job_count' or 'failed_job_count', 1)
  redis.call('HINCRBYFLOAT', rq_worker, 'total_working_time', exec_ms / 1000)
end

redis.call('HINCRBY', wm, 'tasks_executed', 1)
redis.call('HINCRBY', wm, 'execution_ms', exec_ms)
redis.call('HINCRBY', STATS, 'tasks_executed', 1)
redis.call('HINCRBY', STATS, 'execution_ms', exec_ms)

if f[4] == '1' then
  outcome, payload = 'cancelled', 'cancelled while running'
end

if outcome == 'failed' then
  redis.call('HINCRBY', wm, 'tasks_failed', 1)
  local retries = tonumber(f[5] or '0')
  if retries > 0 then
    redis.call('HSET', jk, 'piano_retries_left', retries - 1, 'piano_error', payload)
    sched_unclaim(id)
    redis.call('ZREM', RUNNING, id)
    redis.call('ZREM', 'rq:wip:' .. f[7], id .. ':' .. attempt)
    redis.call('HINCRBY', STATS, 'backlog', 1)
    redis.call('HINCRBY', STATS, 'retried', 1)
    local delay = tonumber(f[6] or '0')
    if delay > 0 then
      set_status(jk, 'retry_wait', 'piano_wait_reason', 'retry after ' .. delay .. 's')
      redis.call('ZADD', P .. ':delayed', ts + delay * 1000, id)
    else
      push_queued(id, f[7], ts, false)
    end
    count_for_rq(false)
    return {'retrying', 0}
  end
elseif outcome == 'timed_out' then
  redis.call('HINCRBY', wm, 'tasks_timed_out', 1)
end

if ARGV[9] ~= '' and ttl > 0 and (keep_result or outcome ~= 'completed') then
  local entry, flat = cjson.decode(ARGV[9]), {}
  if outcome == 'cancelled' then
    -- The run's own result is discarded: RQ records the job as stopped, not successful.
    entry.type, entry.return_value, entry.exc_string = 3, nil, nil
  end
  for k, v in pairs(entry) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
  local rk = 'rq:results:' .. id
  redis.call('XADD', rk, 'MAXLEN', '10', '*', unpack(flat))
  redis.call('EXPIRE', rk, ttl)
end

local error_text = nil
if outcome == 'completed' then
  if keep_result and payload ~= 'null' then redis.call('HSET', jk, 'piano_result', payload) end
else
  error_text = payload
end
set_terminal(id, outcome, error_text, ts, default_ttl)
local released = settle_children(id, outcome, error_text, ts, default_ttl)
count_for_rq(outcome == 'completed')
return {outcome, released}
