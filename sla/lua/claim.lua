-- Claims due timers for one owner with a lease, in one atomic step.
-- Timers whose lease ran out (their owner died before acknowledging) are
-- claimed again first, with their original due time, so they count as late.
-- A call is identified by a claim id: when its reply is lost and the client
-- sends it again (redis-py retries a timed-out command), the retry gets the
-- same timers back instead of leaving them leased to nobody until expiry.
-- KEYS: [1] timers zset (score = due ms), [2] leases zset (score = lease
--       expiry ms), [3] lease info hash (member -> "owner|due"),
--       [4] last claim per owner hash (owner -> "claim id|member,member...")
-- ARGV: [1] max timers, [2] lease ms, [3] owner, [4] claim id
-- Returns {now_ms, next due or lease expiry ms or -1, member, due, refired, ...}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local lease_until = now + tonumber(ARGV[2])
local owner = ARGV[3]
local out = { now, -1 }
local n = 0

local last = redis.call('HGET', KEYS[4], owner)
if last and string.sub(last, 1, #ARGV[4] + 1) == ARGV[4] .. '|' then
  for m in string.gmatch(string.sub(last, #ARGV[4] + 2), '([^,]+)') do
    local info = redis.call('HGET', KEYS[3], m)
    if info and string.sub(info, 1, #owner + 1) == owner .. '|' then
      out[#out + 1] = m; out[#out + 1] = tonumber(string.sub(info, #owner + 2)); out[#out + 1] = 1
    end
  end
  return out
end
local claimed = {}

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
for _, m in ipairs(expired) do
  local info = redis.call('HGET', KEYS[3], m) or ''
  local bar = string.find(info, '|', 1, true)
  local due = bar and tonumber(string.sub(info, bar + 1)) or now
  redis.call('ZADD', KEYS[2], lease_until, m)
  redis.call('HSET', KEYS[3], m, owner .. '|' .. due)
  out[#out + 1] = m; out[#out + 1] = due; out[#out + 1] = 1
  claimed[#claimed + 1] = m
  n = n + 1
end

if n < limit then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit - n)
  for i = 1, #due, 2 do
    local m = due[i]
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZADD', KEYS[2], lease_until, m)
    redis.call('HSET', KEYS[3], m, owner .. '|' .. due[i + 1])
    out[#out + 1] = m; out[#out + 1] = tonumber(due[i + 1]); out[#out + 1] = 0
    claimed[#claimed + 1] = m
  end
end
if #claimed > 0 then
  redis.call('HSET', KEYS[4], owner, ARGV[4] .. '|' .. table.concat(claimed, ','))
elseif last then
  redis.call('HDEL', KEYS[4], owner)
end

-- When to claim again: the next timer due, or the next lease to run out (a
-- replica that died holding it), whichever comes first.
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt > 0 then out[2] = tonumber(nxt[2]) end
local lease = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #lease > 0 and (out[2] < 0 or tonumber(lease[2]) < out[2]) then out[2] = tonumber(lease[2]) end
return out
