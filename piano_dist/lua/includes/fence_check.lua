--[[
  Fencing check for writes made under a ResourceCoordinator lock (included at the top
  of a write script by `--!include fence_check`).
    ARGV[1]  fence key of the writer's lock, or '' for an unfenced write
    ARGV[2]  fencing token of that lock
  Refuses the write when a newer token has been granted for the resource.
]]
if ARGV[1] ~= '' then
  local latest = tonumber(redis.call('GET', ARGV[1]) or '0')
  if latest > tonumber(ARGV[2]) then
    return redis.error_reply('FENCED ' .. ARGV[1] .. ' latest=' .. latest .. ' token=' .. ARGV[2])
  end
end
