-- Moves dead letters back to the retry set, due now, with a fresh max age
-- (attempts start again from 0), in one step so none is lost or doubled.
-- KEYS: [1] dead-letter list, [2] retry zset
-- ARGV: [1] max dead letters to move
-- Returns how many were moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
for _, raw in ipairs(items) do
  local d = cjson.decode(raw)
  d.n = 0
  d.first = now
  d.error = nil
  redis.call('ZADD', KEYS[2], now, cjson.encode(d))
end
redis.call('LTRIM', KEYS[1], #items, -1)
return #items
