--[[
  Read what lies around a point of a GridWorld in one consistent step: the cells that
  overlap the square of `radius` around it (their agents, objects and latest events),
  the clock, and, when an agent is named, that agent's own record (its position is the
  centre). Work is bounded by the cells in view, never by the size of the world.

  KEYS[1]  the world's base key  <prefix>:world:{world:<name>}  (layout: world_apply.lua)
  ARGV[1]  agent id whose position is the centre, or "" to use ARGV[3], ARGV[4]
  ARGV[2]  radius (tiles)
  ARGV[3]  centre x (when ARGV[1] is "")
  ARGV[4]  centre y

  Returns {meta, me, cells}:
    meta   {width, height, cell, tick, minutes_per_tick, start_minute}
    me     the agent's record JSON, or "" (unknown agent: no cells are read)
    cells  list of {flat HGETALL of the cell hash, list of event JSON newest first}
  Error "NO_WORLD" when the world does not exist.
]]
local base = KEYS[1]
local meta = redis.call('HMGET', base .. ':meta', 'width', 'height', 'cell', 'tick', 'minutes_per_tick',
  'start_minute')
if not meta[1] then return redis.error_reply('NO_WORLD') end
local cell = tonumber(meta[3] or '8')
meta[3] = tostring(cell)

local me, cx, cy = '', tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[1] ~= '' then
  me = redis.call('HGET', base .. ':agents', ARGV[1])
  if not me then return {meta, '', {}} end
  local record = cjson.decode(me)
  cx, cy = record.x, record.y
end

local r = tonumber(ARGV[2])
local cells = {}
for gx = math.floor((cx - r) / cell), math.floor((cx + r) / cell) do
  for gy = math.floor((cy - r) / cell), math.floor((cy + r) / cell) do
    local id = gx .. ':' .. gy
    cells[#cells + 1] = {redis.call('HGETALL', base .. ':cell:' .. id),
      redis.call('LRANGE', base .. ':cellev:' .. id, 0, -1)}
  end
end
return {meta, me, cells}
