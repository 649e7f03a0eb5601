-- Hands an owner's unacknowledged leases back to the timer set with their
-- original due times (graceful shutdown), so another replica fires them now
-- instead of after the lease expires.
-- KEYS: [1] timers zset, [2] leases zset, [3] lease info hash
-- ARGV: [1] owner, [2..] members the owner believes it holds
local n = 0
for i = 2, #ARGV do
  local m = ARGV[i]
  local info = redis.call('HGET', KEYS[3], m)
  if info then
    local bar = string.find(info, '|', 1, true)
    if string.sub(info, 1, bar - 1) == ARGV[1] then
      redis.call('ZREM', KEYS[2], m)
      redis.call('HDEL', KEYS[3], m)
      redis.call('ZADD', KEYS[1], tonumber(string.sub(info, bar + 1)), m)
      n = n + 1
    end
  end
end
return n
