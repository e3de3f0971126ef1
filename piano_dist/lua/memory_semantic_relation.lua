--[[
  Upsert a relation between two stored concepts (one per source, target and type) and
  index it in both concepts' adjacency sets.

  KEYS[1]  concepts hash           concept_id -> JSON concept
  KEYS[2]  names hash              lower-cased name -> concept_id
  KEYS[3]  relations hash          relation_id -> JSON relation
  KEYS[4]  relation index hash     "<source>|<target>|<type>" -> relation_id
  KEYS[5]  sequence counter
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  key base (adjacency sets are <base>:adj:<concept_id>)
  ARGV[4]  source: a concept id or a lower-cased name
  ARGV[5]  target: a concept id or a lower-cased name
  ARGV[6]  relation type
  ARGV[7]  relation body: JSON object without relation_id/source_id/target_id (spliced in)

  Returns {relation_id, source_id, target_id}.
  Errors: "FENCED …", "UNKNOWN_CONCEPT <ref>".
]]
--!include fence_check
local function resolve(ref)
  if redis.call('HEXISTS', KEYS[1], ref) == 1 then return ref end
  return redis.call('HGET', KEYS[2], ref)
end
local src, tgt = resolve(ARGV[4]), resolve(ARGV[5])
if not src then return redis.error_reply('UNKNOWN_CONCEPT ' .. ARGV[4]) end
if not tgt then return redis.error_reply('UNKNOWN_CONCEPT ' .. ARGV[5]) end

local index_field = src .. '|' .. tgt .. '|' .. ARGV[6]
local rid = redis.call('HGET', KEYS[4], index_field)
if not rid then
  rid = 'relation_' .. redis.call('INCR', KEYS[5])
  redis.call('HSET', KEYS[4], index_field, rid)
end
redis.call('HSET', KEYS[3], rid, '{"relation_id":"' .. rid .. '","source_id":"' .. src ..
  '","target_id":"' .. tgt .. '",' .. string.sub(ARGV[7], 2))
redis.call('SADD', ARGV[3] .. ':adj:' .. src, rid)
redis.call('SADD', ARGV[3] .. ':adj:' .. tgt, rid)
return {rid, src, tgt}
