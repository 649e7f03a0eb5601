-- Claims due webhook retries with a lease: each is moved `lease` ms into the
-- future instead of removed, so it becomes due again (for any replica) only if
-- its claimer dies before settling it; settling removes or replaces it.
-- KEYS: [1] retry zset (score = next attempt ms)
-- ARGV: [1] max retries, [2] lease ms
-- Returns the claimed members.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local lease_until = now + tonumber(ARGV[2])
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], lease_until, m)
end
return due
