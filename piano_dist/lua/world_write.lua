--[[
  One write to a GridWorld: set (or delete) fields of one of its hashes and bump the
  world's version, refused if the writer's WRITE lock on the world was superseded.

  KEYS[1]  the hash written (objects, agents or events of the world)
  KEYS[2]  the world's version counter
  ARGV[1]  fence key of the "world" resource, or "" for an unfenced write
  ARGV[2]  fencing token of the writer's lock
  ARGV[3]  "set" or "del"
  ARGV[4…] set: field, value, field, value, …   del: field, field, …

  Returns the new world version.
]]
--!include fence_check
if ARGV[3] == 'set' then
  for i = 4, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
else
  for i = 4, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return redis.call('INCR', KEYS[2])
