-- Hands an owner's unacknowledged leases back to the timer set with their
-- original due times (graceful shutdown), so another replica fires them now
-- instead of after the lease expires.
-- KEYS: [1] timers zset, [2] leases zset, [3] lease info hash
-- ARGV: [1] owner, [2..] members the owner believes it holds; none given: every
--       lease of the owner (also those of a claim whose reply it never read)
local owner = ARGV[1]
local members = {}
if #ARGV > 1 then
  for i = 2, #ARGV do members[#members + 1] = ARGV[i] end
else
  -- the leases zset holds only claimed, unacknowledged timers: a few batches
  members = redis.call('ZRANGE', KEYS[2], 0, -1)
end
local n = 0
for _, m in ipairs(members) do
  local info = redis.call('HGET', KEYS[3], m)
  if info then
    local bar = string.find(info, '|', 1, true)
    if string.sub(info, 1, bar - 1) == owner then
      redis.call('ZREM', KEYS[2], m)
      redis.call('HDEL', KEYS[3], m)
      redis.call('ZADD', KEYS[1], tonumber(string.sub(info, bar + 1)), m)
      n = n + 1
    end
  end
end
if n > 0 then
  -- wake the timer workers of every replica: these are due now
  -- (KEYS[1] is `<tag>:timers`; the message is `<tag>|t` on the workspace's
  -- sharded channel `<tag>:notify`, router/store/notify.py)
  local tag = string.sub(KEYS[1], 1, -8)
  redis.call('SPUBLISH', tag .. ':notify', tag .. '|t')
end
return n
