--[[
  Add one node (event, thought or chat) to an agent's associative memory stream, in the
  generative-agents layout: the node, its place in the per-type sequence, its keyword
  indexes, keyword strength, embedding and last-access time, all at once; then evict the
  oldest nodes (with every index entry naming them) until at most max_nodes remain.

  Per-keyword and per-type keys are derived from ARGV[3] (the instance's key base, which
  carries the agent's hash tag, so they live in the same cluster slot as KEYS):
    <base>:bytype:<type>         zset node_id scored by node_count
    <base>:kw:<type>:<keyword>  zset node_id scored by node_count
    <base>:kwstr:<type>         hash keyword -> strength (events and thoughts)

  KEYS[1]  nodes hash              node_id -> JSON node
  KEYS[2]  order zset              every node_id scored by node_count (eviction order)
  KEYS[3]  sequence counter        node_count
  KEYS[4]  embeddings hash         embedding_key -> JSON vector
  KEYS[5]  embedding refs hash     embedding_key -> number of nodes using it
  KEYS[6]  last-access hash        node_id -> epoch seconds
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  key base
  ARGV[4]  node type: event | thought | chat
  ARGV[5]  node body: JSON object without node_id/node_count/type_count (spliced in);
           must hold "keywords", "embedding_key", "node_type" and "kw_counted"
  ARGV[6]  JSON list of the node's keywords (lower case, distinct)
  ARGV[7]  embedding key
  ARGV[8]  JSON embedding vector, '' when none is given
  ARGV[9]  '1' when the node adds to keyword strength (not "is idle"), else '0'
  ARGV[10] max_nodes
  ARGV[11] initial last-access time (the node's creation, epoch seconds)

  Returns {node_id, node_count, type_count, evicted}.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check

local nodes, order, embeddings, emb_refs, accessed = KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6]
local base, node_type = ARGV[3], ARGV[4]

local node_count = redis.call('INCR', KEYS[3])
local node_id = 'node_' .. node_count
local type_seq = base .. ':bytype:' .. node_type
local type_count = redis.call('ZCARD', type_seq) + 1

redis.call('HSET', nodes, node_id, '{"node_id":"' .. node_id .. '","node_count":' .. node_count ..
  ',"type_count":' .. type_count .. ',' .. string.sub(ARGV[5], 2))
redis.call('ZADD', order, node_count, node_id)
redis.call('ZADD', type_seq, node_count, node_id)
redis.call('HSET', accessed, node_id, ARGV[11])

for _, kw in ipairs(cjson.decode(ARGV[6])) do
  redis.call('ZADD', base .. ':kw:' .. node_type .. ':' .. kw, node_count, node_id)
  if ARGV[9] == '1' and node_type ~= 'chat' then
    redis.call('HINCRBY', base .. ':kwstr:' .. node_type, kw, 1)
  end
end

if ARGV[8] ~= '' then redis.call('HSET', embeddings, ARGV[7], ARGV[8]) end
redis.call('HINCRBY', emb_refs, ARGV[7], 1)

local evicted = 0
local excess = redis.call('ZCARD', order) - tonumber(ARGV[10])
if excess > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', order, 0, excess - 1)) do
    local raw = redis.call('HGET', nodes, victim)
    if raw then
      local node = cjson.decode(raw)
      local vtype = node['node_type']
      redis.call('ZREM', base .. ':bytype:' .. vtype, victim)
      for _, kw in ipairs(node['keywords']) do
        local kw_key = base .. ':kw:' .. vtype .. ':' .. kw
        redis.call('ZREM', kw_key, victim)
        if node['kw_counted'] == true and vtype ~= 'chat' then
          local strength_key = base .. ':kwstr:' .. vtype
          if redis.call('HINCRBY', strength_key, kw, -1) <= 0 then redis.call('HDEL', strength_key, kw) end
        end
      end
      local ekey = node['embedding_key']
      if redis.call('HINCRBY', emb_refs, ekey, -1) <= 0 then
        redis.call('HDEL', emb_refs, ekey)
        redis.call('HDEL', embeddings, ekey)
      end
    end
    redis.call('HDEL', nodes, victim)
    redis.call('HDEL', accessed, victim)
    redis.call('ZREM', order, victim)
    evicted = evicted + 1
  end
end
return {node_id, node_count, type_count, evicted}
