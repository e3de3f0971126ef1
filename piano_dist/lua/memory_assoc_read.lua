--[[
  Read nodes of an agent's associative memory in one round trip, with their last-access
  times (and, when asked, their embedding vectors). Work is bounded by the number of
  nodes asked for, never by the size of the memory. Read-only.

  Key layout: see memory_assoc_add.lua (every key derived from the key base ARGV[1]).

  KEYS[1]  <base>:nodes (declared so the call routes to the agent's slot)
  ARGV[1]  key base
  ARGV[2]  "1" to return embedding vectors too, else "0"
  ARGV[3]  mode, then its arguments:
    ids         ARGV[4…] node ids, in the order wanted
    latest      ARGV[4] node type, ARGV[5] how many (newest first)
    after       ARGV[4] node_count, ARGV[5] how many (oldest first, any type)
    candidates  ARGV[4] k, ARGV[5…] query words: the k most recently accessed nodes, the
                k most important events and thoughts, and for each word up to k events
                and k thoughts indexed under it (retrieval's candidate set)

  Returns {ids, node JSONs, last-access times, vectors} (vectors: packed or false; an
  empty list unless asked). Ids whose node is gone are left out.
]]
local base, want_vectors, mode = ARGV[1], ARGV[2] == '1', ARGV[3]
local nodes = base .. ':nodes'

local ids = {}
if mode == 'ids' then
  for i = 4, #ARGV do ids[#ids + 1] = ARGV[i] end
elseif mode == 'latest' then
  ids = redis.call('ZREVRANGE', base .. ':bytype:' .. ARGV[4], 0, tonumber(ARGV[5]) - 1)
elseif mode == 'after' then
  ids = redis.call('ZRANGEBYSCORE', base .. ':order', '(' .. ARGV[4], '+inf', 'LIMIT', 0, tonumber(ARGV[5]))
elseif mode == 'candidates' then
  local k = tonumber(ARGV[4])
  local seen = {}
  local function take(list)
    for _, id in ipairs(list) do
      if not seen[id] then seen[id] = true; ids[#ids + 1] = id end
    end
  end
  take(redis.call('ZREVRANGE', base .. ':recent', 0, k - 1))
  take(redis.call('ZREVRANGE', base .. ':important', 0, k - 1))
  for i = 5, #ARGV do
    take(redis.call('ZREVRANGE', base .. ':kw:event:' .. ARGV[i], 0, k - 1))
    take(redis.call('ZREVRANGE', base .. ':kw:thought:' .. ARGV[i], 0, k - 1))
  end
else
  return redis.error_reply('UNKNOWN_MODE ' .. tostring(mode))
end

if #ids == 0 then return {{}, {}, {}, {}} end
local raws = redis.call('HMGET', nodes, unpack(ids))
local times = redis.call('ZMSCORE', base .. ':recent', unpack(ids))
local out_ids, out_raws, out_times, out_vectors = {}, {}, {}, {}
local ekeys = {}
for i, id in ipairs(ids) do
  if raws[i] then
    out_ids[#out_ids + 1] = id
    out_raws[#out_raws + 1] = raws[i]
    out_times[#out_times + 1] = times[i] or ''
    if want_vectors then
      local node = cjson.decode(raws[i])
      ekeys[#ekeys + 1] = (node.has_embedding ~= false) and (node.embedding_key or node.description) or ''
    end
  end
end
if want_vectors and #ekeys > 0 then
  out_vectors = redis.call('HMGET', base .. ':embeddings', unpack(ekeys))
end
return {out_ids, out_raws, out_times, out_vectors}
