--[[
  Add one event to an agent's episodic memory: join the chosen recent episode (if it
  still exists and has room) or start a new one, then evict the least recently active
  episodes, with all their events and causal links, until at most max_episodes remain.

  The caller picks the candidate episode by coherence from a read a moment earlier;
  doing the join here means a concurrent eviction of that episode turns the join into a
  new episode instead of a dangling event, and two writers joining one episode both land.

  KEYS[1]  events hash             event_id -> JSON event
  KEYS[2]  episodes hash           episode_id -> JSON episode
  KEYS[3]  activity zset           episode_id scored by its end_time
  KEYS[4]  sequence counter        numbers both event_N and episode_N
  KEYS[5]  causal hash             source event_id -> JSON list of relations
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock
  ARGV[3]  event body: JSON object without event_id / episode_id (spliced in here)
  ARGV[4]  event timestamp (epoch seconds)
  ARGV[5]  candidate episode id to join, '' to start a new episode
  ARGV[6]  new-episode body: JSON object (episode_type, title, summary, location, …)
  ARGV[7]  JSON list of the event's participants
  ARGV[8]  event importance
  ARGV[9]  event emotional valence
  ARGV[10] coherence of the event with the candidate
  ARGV[11] max_episodes
  ARGV[12] max events per episode (a full episode is not joined)
  ARGV[13] event location, '' when unknown

  Returns {event_id, episode_id, joined (0|1), evicted episode count}.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check

local events, episodes, activity, seq, causal = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ts = tonumber(ARGV[4])
local event_id = 'event_' .. redis.call('INCR', seq)

local episode, episode_id, joined = nil, nil, 0
if ARGV[5] ~= '' then
  local raw = redis.call('HGET', episodes, ARGV[5])
  if raw then
    local candidate = cjson.decode(raw)
    if #candidate['event_ids'] < tonumber(ARGV[12]) then
      episode, episode_id, joined = candidate, ARGV[5], 1
    end
  end
end

if episode then
  local n = #episode['event_ids']
  table.insert(episode['event_ids'], event_id)
  if ts > episode['end_time'] then episode['end_time'] = ts end
  if ts < episode['start_time'] then episode['start_time'] = ts end
  local seen, people = {}, {}
  for _, p in ipairs(episode['participants']) do seen[p] = true; table.insert(people, p) end
  for _, p in ipairs(cjson.decode(ARGV[7])) do
    if not seen[p] then seen[p] = true; table.insert(people, p) end
  end
  episode['participants'] = people
  if episode['location'] == cjson.null and ARGV[13] ~= '' then episode['location'] = ARGV[13] end
  episode['importance'] = math.max(episode['importance'], tonumber(ARGV[8]))
  episode['emotional_impact'] = (episode['emotional_impact'] * n + tonumber(ARGV[9])) / (n + 1)
  -- mean coherence of the joins so far (the founding event has none)
  episode['coherence_score'] = (episode['coherence_score'] * (n - 1) + tonumber(ARGV[10])) / n
else
  episode_id = 'episode_' .. redis.call('INCR', seq)
  episode = cjson.decode(ARGV[6])
  episode['episode_id'] = episode_id
  episode['event_ids'] = {event_id}
  episode['start_time'] = ts
  episode['end_time'] = ts
end

redis.call('HSET', episodes, episode_id, cjson.encode(episode))
redis.call('ZADD', activity, episode['end_time'], episode_id)
redis.call('HSET', events, event_id,
  '{"event_id":"' .. event_id .. '","episode_id":"' .. episode_id .. '",' .. string.sub(ARGV[3], 2))

local evicted = 0
local excess = redis.call('ZCARD', activity) - tonumber(ARGV[11])
if excess > 0 then
  for _, victim in ipairs(redis.call('ZRANGE', activity, 0, excess - 1)) do
    local raw = redis.call('HGET', episodes, victim)
    if raw then
      for _, e in ipairs(cjson.decode(raw)['event_ids']) do
        redis.call('HDEL', events, e)
        redis.call('HDEL', causal, e)
      end
    end
    redis.call('HDEL', episodes, victim)
    redis.call('ZREM', activity, victim)
    evicted = evicted + 1
  end
end
return {event_id, episode_id, joined, evicted}
