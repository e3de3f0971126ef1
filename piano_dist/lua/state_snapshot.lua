--[[
  state_snapshot: create or delete a snapshot of one agent's state.

  Input:
    KEYS[1] data       agent state hash (leaf path -> JSON)
    KEYS[2] meta       agent state meta hash (fields "version", "snapseq")
    KEYS[3] modvers    module id -> number of applied changes
    KEYS[4] snapinfo   snapshot id -> JSON {version, ts, modules}
    KEYS[5] snapidx    sorted set of snapshot ids by creation order
    KEYS[6] snapdata   the snapshot's copy of the state hash
    ARGV[1] "create" | "delete"
    ARGV[2] snapshot id
    ARGV[3] snapshot key prefix (<base>:snap:), to evict old snapshots
    ARGV[4] max snapshots kept
    ARGV[5] "1": create only if no snapshot has this id

  Transition: create copies the state hash with COPY in one step (no reader can catch
  it half-copied) and evicts the oldest snapshots beyond the maximum; delete removes it.

  Output: create -> 1, or 0 when ARGV[5] is "1" and the snapshot exists;
          delete -> 1 if it existed, else 0.
]]
local DATA, META, MODVERS, INFO, IDX, SNAP = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local sid = ARGV[2]

if ARGV[1] == 'delete' then
  redis.call('DEL', SNAP)
  redis.call('ZREM', IDX, sid)
  return redis.call('HDEL', INFO, sid)
end

if ARGV[5] == '1' and redis.call('HEXISTS', INFO, sid) == 1 then
  return 0
end
if redis.call('EXISTS', DATA) == 1 then
  redis.call('COPY', DATA, SNAP, 'REPLACE')
else
  redis.call('DEL', SNAP)
end
local t = redis.call('TIME')
local modules = {}
local mv = redis.call('HGETALL', MODVERS)
for i = 1, #mv, 2 do modules[mv[i]] = mv[i + 1] end
local info = cjson.encode({
  version = tonumber(redis.call('HGET', META, 'version') or '0'),
  ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000),
  modules = modules,
})
redis.call('HSET', INFO, sid, info)
redis.call('ZADD', IDX, redis.call('HINCRBY', META, 'snapseq', 1), sid)
local max = tonumber(ARGV[4])
while redis.call('ZCARD', IDX) > max do
  local oldest = redis.call('ZRANGE', IDX, 0, 0)[1]
  redis.call('DEL', ARGV[3] .. oldest)
  redis.call('HDEL', INFO, oldest)
  redis.call('ZREM', IDX, oldest)
end
return 1
