-- Brings an archived contact back into Redis for a late action (a survey
-- answer after the grace): a record of the fields those actions read, marked
-- `restored` so that reads answer from the archive and the archiver only takes
-- the new ratings from it (router/archive/contacts.py). It expires after the
-- workspace's grace. A contact still (or again) in Redis is left alone.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] fields JSON
-- Returns {1} when restored, {0} when the contact was there.
ACTOR = ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then return { 0 } end
local c = cjson.decode(ARGV[2])
local flat = { 'restored', '1' }
for k, v in pairs(c) do
  if type(v) ~= 'table' then flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
end
redis.call('HSET', KEYS[2], unpack(flat))
redis.call('EXPIRE', KEYS[2], math.max(rt_num('grace_s', 3600), 1))
return { 1 }
