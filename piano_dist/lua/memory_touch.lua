--[[
  Record that entries were accessed: bump their access count and move their last-access
  time forward (never back). Unfenced on purpose: counts only grow and the time is a
  max, so a late or repeated touch cannot undo a newer holder's work, and readers that
  hold only a READ lock must be able to touch.

  KEYS[1]  records hash            (only ids still present are touched)
  KEYS[2]  access-count hash       id -> count   (ARGV[2] == '1' to bump)
  KEYS[3]  last-access hash        id -> epoch seconds
  ARGV[1]  access time (epoch seconds)
  ARGV[2]  '1' to bump counts, '0' to move last-access only
  ARGV[3…] ids

  Returns the number of ids touched.
]]
local now = tonumber(ARGV[1])
local touched = 0
for j = 3, #ARGV do
  local id = ARGV[j]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    if ARGV[2] == '1' then redis.call('HINCRBY', KEYS[2], id, 1) end
    local last = tonumber(redis.call('HGET', KEYS[3], id) or '-1e308')
    if now > last then redis.call('HSET', KEYS[3], id, ARGV[1]) end
    touched = touched + 1
  end
end
return touched
