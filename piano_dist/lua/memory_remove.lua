--[[
  Remove entries by id from a memory's records hash and from every index naming them
  (cleanup of expired or weak memories, explicit deletes). Index keys may be zsets or
  hashes keyed by id.

  KEYS[1]  records hash            id -> JSON record
  KEYS[2…] index keys (zset members or hash fields named by id)
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3…] ids to remove

  Returns the number of ids that were present in the records hash.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check

local kinds = {}
for i = 2, #KEYS do kinds[i] = redis.call('TYPE', KEYS[i])['ok'] end

local removed = 0
for j = 3, #ARGV do
  local id = ARGV[j]
  removed = removed + redis.call('HDEL', KEYS[1], id)
  for i = 2, #KEYS do
    if kinds[i] == 'zset' then
      redis.call('ZREM', KEYS[i], id)
    elseif kinds[i] == 'hash' then
      redis.call('HDEL', KEYS[i], id)
    end
  end
end
return removed
