-- Stores a new routing config version and the runtime numbers Lua reads,
-- atomically, and announces it to every replica.
-- KEYS: [1] runtime hash, [2] config hash (the workspace is added to
--       `router:workspaces` before, apart: that key lives in another slot)
-- ARGV: [1] actor, [2] workspace name, [3] document JSON, [4] expected version
--       ('' for any), [5..] runtime field, value, field, value...
-- Returns {version} or {-2, current version} when the expected version differs.
ACTOR = ARGV[1]
local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then return { -2, current } end
local version = current + 1
redis.call('HSET', KEYS[2], 'version', version, 'doc', ARGV[3], 'updated_at', NOW, 'actor', ACTOR)
-- the archiver's mark (router/archive/events.py) is not the config's: it stays
local arch = redis.call('HGET', KEYS[1], 'arch')
redis.call('DEL', KEYS[1])
local rtv = { 'version', version }
if arch then rtv[#rtv + 1] = 'arch'; rtv[#rtv + 1] = arch end
for i = 5, #ARGV do rtv[#rtv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(rtv))
record({ type = 'config.updated', version = version, previous = current })
redis.call('PUBLISH', 'router:config', TAG .. '|' .. version)
return { version, NOW }
