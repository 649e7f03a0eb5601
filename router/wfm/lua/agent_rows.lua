-- Several agents' state, load, capacity and not-ready reason in one call.
-- Statistics read every agent of a workspace (router/wfm/pools.py): one call
-- per few hundred agents costs the router one reply to parse instead of as many
-- commands to pack and replies to read, and Redis one call instead of many.
-- KEYS: agent hashes of one workspace (one hash tag: one slot).
-- Returns 4 values per key, in order (nil where a field or the agent is missing).
local out = {}
for _, key in ipairs(KEYS) do
  local r = redis.call('HMGET', key, 'st', 'load', 'cap', 'reason')
  for j = 1, 4 do out[#out + 1] = r[j] end
end
return out
