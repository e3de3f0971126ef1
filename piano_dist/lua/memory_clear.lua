--[[
  Forget everything one memory instance holds. Its id counter is not among KEYS, so
  ids are never reused.

  KEYS[1…] the instance's keys to delete (the caller lists them from its key base)
  ARGV[1]  fence key of the caller's lock, '' for an unfenced write
  ARGV[2]  fencing token of that lock

  Returns the number of keys deleted.
  Errors: "FENCED <key> latest=<n> token=<t>".
]]
--!include fence_check
local n = 0
for i = 1, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
return n
