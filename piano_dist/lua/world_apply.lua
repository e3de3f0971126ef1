--[[
  One write to a GridWorld, keeping its spatial index (cells) in step with its records.
  Every write touches only the records it changes and the one or two cells they lie in,
  so agents far apart never wait for each other. Optionally fenced: a caller holding the
  ResourceCoordinator's WRITE lock on the world passes its token, and the write is
  refused if that lock was meanwhile granted to someone else.

  Keys are derived from the world's base key (they share its {world:<name>} hash tag):
    <base>:meta     HASH  width, height, cell, events_per_cell, event_seq, tick, …
    <base>:agents   HASH  agent id -> {"x","y","activity","tick"}
    <base>:objects  HASH  object id -> {"name","x","y","state"}
    <base>:occ      HASH  "x,y" -> agent id (one agent per tile)
    <base>:cell:<cx>:<cy>    HASH  "a:<agent>" / "o:<object>" -> record JSON
    <base>:cellev:<cx>:<cy>  LIST  the cell's newest events first, capped
    <base>:version  STRING bumped by every write

  KEYS[1]  the world's base key  <prefix>:world:{world:<name>}
  ARGV[1]  fence key of the writer's lock, or "" for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  op, then its arguments:
    place   ARGV[4] agent, ARGV[5] x, ARGV[6] y, ARGV[7] activity
            -> {x, y, version}; error "OCCUPIED <x>,<y> <agent>" if another agent is there
    step    ARGV[4] agent, ARGV[5] dx, ARGV[6] dy, ARGV[7] activity, ARGV[8] tick,
            ARGV[9] predicate, ARGV[10] event object ("" = the activity)
            Moves the agent by (dx, dy), clamped to the grid; a move onto a tile another
            agent holds is blocked (the agent stays and still acts). Leaves an event on
            the tile it ends on. A step whose tick is not newer than the agent's last
            applied step changes nothing (a re-run task replays, it does not move twice).
            -> {x, y, event id, "moved" | "blocked" | "replayed", version}
    remove  ARGV[4] agent -> {removed 0|1, version}
    object  ARGV[4] object id, ARGV[5] record JSON (with x, y) -> {version}
    event   ARGV[4] x, ARGV[5] y, ARGV[6] event JSON (without id) -> {event id, version}
  Errors: "UNKNOWN_AGENT <id>", "OUTSIDE <x>,<y>", "NO_WORLD", "FENCED …".
]]
--!include fence_check

local base = KEYS[1]
local META, AGENTS, OBJECTS, OCC, VERSION =
  base .. ':meta', base .. ':agents', base .. ':objects', base .. ':occ', base .. ':version'
local m = redis.call('HMGET', META, 'width', 'height', 'cell', 'events_per_cell')
if not m[1] then return redis.error_reply('NO_WORLD') end
local width, height, cell, keep = tonumber(m[1]), tonumber(m[2]), tonumber(m[3] or '8'),
  tonumber(m[4] or '16')

local function cell_of(x, y)
  return math.floor(x / cell) .. ':' .. math.floor(y / cell)
end
local function inside(x, y)
  return x >= 0 and y >= 0 and x < width and y < height
end
local function tile(x, y) return x .. ',' .. y end

local function add_event(x, y, event)
  local id = 'ev' .. redis.call('HINCRBY', META, 'event_seq', 1)
  event.id, event.x, event.y = id, x, y
  local list = base .. ':cellev:' .. cell_of(x, y)
  redis.call('LPUSH', list, cjson.encode(event))
  redis.call('LTRIM', list, 0, keep - 1)
  return id
end

-- Put an agent's record (its x, y) in place, leaving the tile and cell it was on.
local function put_agent(agent, old, record)
  local x, y = record.x, record.y
  if old then
    redis.call('HDEL', OCC, tile(old.x, old.y))
    if cell_of(old.x, old.y) ~= cell_of(x, y) then
      redis.call('HDEL', base .. ':cell:' .. cell_of(old.x, old.y), 'a:' .. agent)
    end
  end
  local raw = cjson.encode(record)
  redis.call('HSET', OCC, tile(x, y), agent)
  redis.call('HSET', AGENTS, agent, raw)
  redis.call('HSET', base .. ':cell:' .. cell_of(x, y), 'a:' .. agent, raw)
end

local op = ARGV[3]
if op == 'place' then
  local agent, x, y = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
  if not inside(x, y) then return redis.error_reply('OUTSIDE ' .. tile(x, y)) end
  local holder = redis.call('HGET', OCC, tile(x, y))
  if holder and holder ~= agent then return redis.error_reply('OCCUPIED ' .. tile(x, y) .. ' ' .. holder) end
  local raw = redis.call('HGET', AGENTS, agent)
  local old = raw and cjson.decode(raw) or nil
  put_agent(agent, old, {x = x, y = y, activity = ARGV[7], tick = old and old.tick or -1})
  return {x, y, redis.call('INCR', VERSION)}
elseif op == 'step' then
  local agent, dx, dy, tick = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[8])
  local raw = redis.call('HGET', AGENTS, agent)
  if not raw then return redis.error_reply('UNKNOWN_AGENT ' .. agent) end
  local old = cjson.decode(raw)
  if (old.tick or -1) >= tick then
    return {old.x, old.y, old.event or '', 'replayed', tonumber(redis.call('GET', VERSION) or '0')}
  end
  local x = math.min(math.max(old.x + dx, 0), width - 1)
  local y = math.min(math.max(old.y + dy, 0), height - 1)
  local outcome = 'moved'
  local holder = redis.call('HGET', OCC, tile(x, y))
  if holder and holder ~= agent then
    x, y, outcome = old.x, old.y, 'blocked'
  end
  local object = ARGV[10] ~= '' and ARGV[10] or ARGV[7]
  local event_id = add_event(x, y, {subject = agent, predicate = ARGV[9], object = object,
    description = agent .. ' ' .. ARGV[9] .. ' ' .. object})
  -- The record remembers its step's event, so a replay answers the same.
  put_agent(agent, old, {x = x, y = y, activity = ARGV[7], tick = tick, event = event_id})
  return {x, y, event_id, outcome, redis.call('INCR', VERSION)}
elseif op == 'remove' then
  local agent = ARGV[4]
  local raw = redis.call('HGET', AGENTS, agent)
  if not raw then return {0, redis.call('INCR', VERSION)} end
  local old = cjson.decode(raw)
  redis.call('HDEL', OCC, tile(old.x, old.y))
  redis.call('HDEL', base .. ':cell:' .. cell_of(old.x, old.y), 'a:' .. agent)
  redis.call('HDEL', AGENTS, agent)
  return {1, redis.call('INCR', VERSION)}
elseif op == 'object' then
  local id, record = ARGV[4], cjson.decode(ARGV[5])
  if not inside(record.x, record.y) then return redis.error_reply('OUTSIDE ' .. tile(record.x, record.y)) end
  local raw = redis.call('HGET', OBJECTS, id)
  if raw then
    local old = cjson.decode(raw)
    redis.call('HDEL', base .. ':cell:' .. cell_of(old.x, old.y), 'o:' .. id)
  end
  redis.call('HSET', OBJECTS, id, ARGV[5])
  redis.call('HSET', base .. ':cell:' .. cell_of(record.x, record.y), 'o:' .. id, ARGV[5])
  return {redis.call('INCR', VERSION)}
elseif op == 'event' then
  local x, y = tonumber(ARGV[4]), tonumber(ARGV[5])
  if not inside(x, y) then return redis.error_reply('OUTSIDE ' .. tile(x, y)) end
  local id = add_event(x, y, cjson.decode(ARGV[6]))
  return {id, redis.call('INCR', VERSION)}
end
return redis.error_reply('UNKNOWN_OP ' .. tostring(op))
