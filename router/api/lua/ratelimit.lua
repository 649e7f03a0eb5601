-- Adds hits to rate-limit window counters, many tokens in one call
-- (router/api/ratelimit.py): one script call per flush instead of one per
-- request. A counter's TTL is its window's length, set when the call creates it.
-- KEYS: window counters, all of one `{rl:<n>}` slot
-- ARGV: per key, its window length in seconds, then the hits to add
-- Returns each counter's new total, in KEYS order.
local totals = {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[2 * i])
  local total = redis.call('INCRBY', key, n)
  if total == n then
    redis.call('EXPIRE', key, ARGV[2 * i - 1])
  end
  totals[i] = total
end
return totals
