--[[
  Recount the backlog (queued + deferred tasks) from the lists tasks wait on, and store
  it in <prefix>:stats as `backlog` (see recount_backlog in includes/task_common.lua).
  Submitters call it when the running counter says the queue is full: jobs removed
  through RQ (rq-dashboard's "empty queue") leave that counter too high.

  KEYS[1 … n]     rq:queue:<name> for each of the n queues
  KEYS[n+1 … 2n]  rq:deferred:<name> for each queue
  ARGV[1]         piano key prefix

  Returns the backlog.
]]
--!include task_common

local n = #KEYS / 2
local queues, deferred = {}, {}
for i = 1, n do
  queues[i] = KEYS[i]
  deferred[i] = KEYS[n + i]
end
return recount_backlog(queues, deferred)
