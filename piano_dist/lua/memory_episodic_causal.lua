--[[
  Record (or replace) a causal relation from one stored event to another. Relations are
  kept under their source event, so evicting the source's episode removes them; a
  relation whose target was evicted is skipped by readers.

  KEYS[1]  events hash             event_id -> JSON event (both ends must exist)
  KEYS[2]  causal hash             source event_id -> JSON list of relations
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  source event id
  ARGV[4]  target event id
  ARGV[5]  relation: JSON object with "target" and "relation_type" (same pair replaces)

  Returns the number of relations the source now has.
  Errors: "FENCED …", "UNKNOWN_EVENT <id>".
]]
--!include fence_check
for i = 3, 4 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    return redis.error_reply('UNKNOWN_EVENT ' .. ARGV[i])
  end
end
local relation = cjson.decode(ARGV[5])
local kept = {}
local raw = redis.call('HGET', KEYS[2], ARGV[3])
if raw then
  for _, r in ipairs(cjson.decode(raw)) do
    if not (r['target'] == relation['target'] and r['relation_type'] == relation['relation_type']) then
      table.insert(kept, r)
    end
  end
end
table.insert(kept, relation)
redis.call('HSET', KEYS[2], ARGV[3], cjson.encode(kept))
return #kept
