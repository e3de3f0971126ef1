--[[
  An agent's step in a GridWorld as one write: move it (with its new activity) and
  leave an event on the tile it moved to, refused if the writer's WRITE lock on the
  world was superseded. One round trip keeps the world lock's hold short.

  KEYS[1]  the world's agents hash
  KEYS[2]  the world's events hash
  KEYS[3]  the world's meta hash (event_seq)
  KEYS[4]  the world's version counter
  ARGV[1]  fence key of the "world" resource, or "" for an unfenced write
  ARGV[2]  fencing token of the writer's lock
  ARGV[3]  agent id
  ARGV[4]  the agent's record as JSON ({x, y, activity})
  ARGV[5]  the event as JSON (without its id)

  Returns {event id, new world version}.
]]
--!include fence_check
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
local event_id = 'ev' .. redis.call('HINCRBY', KEYS[3], 'event_seq', 1)
redis.call('HSET', KEYS[2], event_id, ARGV[5])
return {event_id, redis.call('INCR', KEYS[4])}
