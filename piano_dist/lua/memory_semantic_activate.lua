--[[
  Raise the activation of stored concepts (a spread computed by the caller), capped at
  1. Additive and commutative, so concurrent activations all count.

  KEYS[1]  concepts hash           (concepts no longer stored are skipped)
  KEYS[2]  activation zset         concept_id -> ln(activation) + decay * hours
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  now, in hours since the epoch
  ARGV[4]  activation decay per hour
  ARGV[5…] concept_id, boost, concept_id, boost, …

  Returns the number of concepts raised.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check
local now_h, decay = tonumber(ARGV[3]), tonumber(ARGV[4])
local raised = 0
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    local score = redis.call('ZSCORE', KEYS[2], id)
    local current = 0
    if score then current = math.exp(tonumber(score) - decay * now_h) end
    local value = math.min(1, current + tonumber(ARGV[i + 1]))
    redis.call('ZADD', KEYS[2], math.log(math.max(value, 1e-9)) + decay * now_h, id)
    raised = raised + 1
  end
end
return raised
