-- Takes a lease (one replica does a job: sealing, exporting metrics) if free,
-- or renews it if ours.
-- KEYS: [1] lease   ARGV: [1] owner, [2] lease ms   Returns 1 when held.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
