--[[
  state_propose: queue a proposed change as pending for one agent.

  Input:
    KEYS[1] pending    sorted set of pending change ids, scored by arrival sequence
    KEYS[2] meta       agent state meta hash (field "seq": the arrival counter)
    KEYS[3] change     hash of this change (<base>:change:<id>)
    ARGV[1] change id
    ARGV[2..] field, value pairs of the change record
              (module, path, type, leaves, priority, expected, meta, fkey, ftok, baseline, ts)

  Transition: (none) -> pending. The sequence number is taken inside Redis so that
  "latest" means the same thing for proposals from every process.

  A proposal sent again after its reply was lost may find its change decided already
  (another process applied the batch): its record is then an outcome (a string, or a
  hash whose status is not "pending", as earlier versions wrote), and nothing is stored.

  Output: {seq, number of pending changes}; seq 0 for a change already decided
]]
local kind = redis.call('TYPE', KEYS[3]).ok
if kind == 'string' or (kind == 'hash' and redis.call('HGET', KEYS[3], 'status') ~= 'pending') then
  return {0, redis.call('ZCARD', KEYS[1])}
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
redis.call('HSET', KEYS[3], 'seq', seq, 'status', 'pending', unpack(ARGV, 2))
redis.call('ZADD', KEYS[1], seq, ARGV[1])
return {seq, redis.call('ZCARD', KEYS[1])}
