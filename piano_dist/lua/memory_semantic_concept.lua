--[[
  Upsert a concept by its lower-cased name, then evict the least activated concepts
  (with their relations, from both ends) until at most max_concepts remain.

  Activation is stored time-invariantly: score = ln(activation) + decay * hours, so the
  zset orders concepts by *current* activation without rewriting scores as time passes;
  activation now = exp(score - decay * now_hours).
  Adjacency sets are derived from ARGV[3] (key base with the agent's hash tag):
    <base>:adj:<concept_id>  set of relation ids touching the concept

  KEYS[1]  concepts hash           concept_id -> JSON concept
  KEYS[2]  names hash              lower-cased name -> concept_id
  KEYS[3]  activation zset         concept_id -> ln(activation) + decay * hours
  KEYS[4]  sequence counter        numbers concept_N and relation_N
  KEYS[5]  relations hash          relation_id -> JSON relation
  KEYS[6]  relation index hash     "<source>|<target>|<type>" -> relation_id
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  key base
  ARGV[4]  lower-cased name
  ARGV[5]  concept body: JSON object without concept_id (spliced in here); its
           "name_key" equals ARGV[4]
  ARGV[6]  initial activation (an existing concept keeps the larger of its own and this)
  ARGV[7]  now, in hours since the epoch
  ARGV[8]  activation decay per hour
  ARGV[9]  max_concepts

  Returns {concept_id, created (0|1), evicted}.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check

local concepts, names, activation, relations, rel_index = KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]
local base = ARGV[3]
local now_h, decay = tonumber(ARGV[7]), tonumber(ARGV[8])
local floor = 1e-9

local id = redis.call('HGET', names, ARGV[4])
local created = 0
if not id then
  id = 'concept_' .. redis.call('INCR', KEYS[4])
  redis.call('HSET', names, ARGV[4], id)
  created = 1
end
redis.call('HSET', concepts, id, '{"concept_id":"' .. id .. '",' .. string.sub(ARGV[5], 2))

local wanted = math.max(tonumber(ARGV[6]), floor)
local old = redis.call('ZSCORE', activation, id)
if old then wanted = math.max(wanted, math.exp(tonumber(old) - decay * now_h)) end
redis.call('ZADD', activation, math.log(wanted) + decay * now_h, id)

local evicted = 0
local excess = redis.call('HLEN', concepts) - tonumber(ARGV[9])
if excess > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', activation, 0, excess)) do
    if excess <= 0 then break end
    if victim ~= id then
      local adj = base .. ':adj:' .. victim
      for _, rid in ipairs(redis.call('SMEMBERS', adj)) do
        local raw = redis.call('HGET', relations, rid)
        if raw then
          local r = cjson.decode(raw)
          local other = r['source_id']
          if other == victim then other = r['target_id'] end
          redis.call('SREM', base .. ':adj:' .. other, rid)
          redis.call('HDEL', rel_index, r['source_id'] .. '|' .. r['target_id'] .. '|' .. r['relation_type'])
          redis.call('HDEL', relations, rid)
        end
      end
      redis.call('DEL', adj)
      local raw = redis.call('HGET', concepts, victim)
      if raw then redis.call('HDEL', names, cjson.decode(raw)['name_key']) end
      redis.call('HDEL', concepts, victim)
      redis.call('ZREM', activation, victim)
      excess = excess - 1
      evicted = evicted + 1
    end
  end
end
return {id, created, evicted}
