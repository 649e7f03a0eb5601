-- Acknowledges a timer whose effect the router applied itself (follow-up
-- contacts): drops its lease. An effect applied twice is harmless because the
-- router's effects are idempotent (the follow-up's id is derived from the timer).
-- KEYS: [1] leased timers zset, [2] lease info hash   ARGV: [1] member
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])
