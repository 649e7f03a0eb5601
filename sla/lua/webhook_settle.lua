-- Settles the webhook deliveries of one stream entry, or one retry, in one
-- atomic step: the entry is acknowledged (or the retry removed) in the same
-- step that schedules what failed, so a crash in between cannot lose a delivery.
-- KEYS: [1] events stream, [2] retry zset (score = next attempt ms),
--       [3] dead-letter list
-- ARGV: [1] consumer group, [2] stream id to XACK or '',
--       [3] retry member being settled or '',
--       then 8 per failed delivery: delay ms, max age ms, first attempt ms or ''
--       (= now), attempts made, stream id, subscription, event JSON, error
-- Returns {settled (0 when another replica settled it first), retried, dead}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Whoever settles first owns the failures: a second settle (a replica that was
-- too slow and lost the entry or lease to another) only adds duplicates.
if ARGV[2] ~= '' and redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return { 0, 0, 0 }
end
if ARGV[3] ~= '' and redis.call('ZREM', KEYS[2], ARGV[3]) == 0 then
  return { 0, 0, 0 }
end

local retried, dead = 0, 0
for i = 4, #ARGV, 8 do
  local first = ARGV[i + 2] == '' and now or tonumber(ARGV[i + 2])
  local deadline = first + tonumber(ARGV[i + 1])
  local d = { id = ARGV[i + 4], sub = ARGV[i + 5], n = tonumber(ARGV[i + 3]), first = first,
              e = ARGV[i + 6] }
  if now >= deadline then
    d.error = ARGV[i + 7]
    redis.call('RPUSH', KEYS[3], cjson.encode(d))
    dead = dead + 1
  else
    -- The last attempt is made at the deadline, so a receiver gets the full max age.
    redis.call('ZADD', KEYS[2], math.min(now + tonumber(ARGV[i]), deadline), cjson.encode(d))
    retried = retried + 1
  end
end
return { 1, retried, dead }
