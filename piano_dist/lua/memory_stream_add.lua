--[[
  Append one entry to a bounded memory stream (CircularBuffer, TemporalMemory):
  store it, index it, expire entries past the retention cutoff, then evict from the
  low end of the order index until at most `bound` entries remain. One script, so
  concurrent writers in many processes can never leave the stream over its bound or
  an entry in one index but not another.

  KEYS[1]  records hash            id -> JSON record
  KEYS[2]  order zset              id scored by ARGV[7] (or by sequence when '')
  KEYS[3]  sequence counter        INCR gives the new id's number
  KEYS[4]  access-count hash       id -> times accessed
  KEYS[5]  last-access hash        id -> epoch seconds
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  id prefix ("mem_", "temp_mem_")
  ARGV[4]  record body: a JSON object without its "id" (spliced in here)
  ARGV[5]  bound: maximum number of entries kept
  ARGV[6]  expiry cutoff (epoch seconds; entries whose "timestamp" is older go), '' for none
  ARGV[7]  order score for the new entry, '' to use its sequence number

  Returns {id, removed}: removed counts expired plus evicted entries (maybe the new one).
  Errors: "FENCED <key> latest=<n> token=<t>" when a newer lock was granted.
]]
--!include fence_check

local records, order, access_n, access_t = KEYS[1], KEYS[2], KEYS[4], KEYS[5]
local seq = redis.call('INCR', KEYS[3])
local id = ARGV[3] .. seq
local score = seq
if ARGV[7] ~= '' then score = tonumber(ARGV[7]) end

redis.call('HSET', records, id, '{"id":"' .. id .. '",' .. string.sub(ARGV[4], 2))
redis.call('ZADD', order, score, id)

local function drop(victim)
  redis.call('HDEL', records, victim)
  redis.call('ZREM', order, victim)
  redis.call('HDEL', access_n, victim)
  redis.call('HDEL', access_t, victim)
end

local removed = 0
if ARGV[6] ~= '' then
  -- Entries arrive in time order, so expired ones sit at the low end: stop at the first
  -- live one (a writer with a skewed clock may leave a straggler, which reads filter).
  local cutoff = tonumber(ARGV[6])
  while true do
    local oldest = redis.call('ZRANGE', order, 0, 0)[1]
    if not oldest then break end
    local raw = redis.call('HGET', records, oldest)
    if raw and tonumber(cjson.decode(raw)['timestamp']) >= cutoff then break end
    drop(oldest)
    removed = removed + 1
  end
end

local excess = redis.call('ZCARD', order) - tonumber(ARGV[5])
if excess > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', order, 0, excess - 1)) do
    drop(victim)
    removed = removed + 1
  end
end
return {id, removed}
