-- Gives a lease back (on shutdown) so another replica takes over at once.
-- KEYS: [1] lease   ARGV: [1] owner   Returns 1 when it was ours.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
