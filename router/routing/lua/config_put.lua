-- Stores a new routing config version, keeps it in the workspace's history and
-- sets the runtime numbers Lua reads, atomically, and announces it to every
-- replica.
-- KEYS: [1] runtime hash, [2] config hash (the workspace is added to
--       `router:workspaces` before, apart: that key lives in another slot)
-- ARGV: [1] actor, [2] workspace name, [3] document JSON, [4] expected version
--       ('' for any), [5] the document's description, [6] the version this one
--       rolls back to ('' when not a rollback), [7] versions the history keeps in
--       Redis, [8..] runtime field, value, ...
-- Returns {version, now} or {-2, current version} when the expected version differs.
ACTOR = ARGV[1]
local cur = redis.call('HMGET', KEYS[2], 'version', 'doc', 'updated_at', 'actor')
local current = tonumber(cur[1] or '0')
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then return { -2, current } end
local rollback_of = tonumber(ARGV[6])

-- `<v>:meta` of the history (router/routing/confighistory.py reads it)
local function meta(v, at, actor, description, rb)
  return '{"version":' .. v .. ',"updated_at":' .. at .. ',"actor":' .. cjson.encode(actor) ..
         ',"description":' .. cjson.encode(description) .. ',"rollback_of":' ..
         (rb and tostring(rb) or 'null') .. '}'
end

local versions = kcv()
-- A version stored before history was kept goes in first, once: the history then
-- runs unbroken from it (readers list it from the config hash until then).
if current > 0 and redis.call('HEXISTS', versions, current .. ':meta') == 0 then
  local ok, old = pcall(cjson.decode, cur[2])
  local desc = ok and type(old) == 'table' and old.description
  redis.call('HSET', versions, current, cur[2], current .. ':meta',
             meta(current, cur[3], cur[4], type(desc) == 'string' and desc or '', nil),
             'floor', current)
end

local version = current + 1
redis.call('HSET', KEYS[2], 'version', version, 'doc', ARGV[3], 'updated_at', NOW, 'actor', ACTOR)
redis.call('HSET', versions, version, ARGV[3],
           version .. ':meta', meta(version, NOW, ACTOR, ARGV[5], rollback_of))
-- Redis keeps the latest `kept` versions only (history belongs to the archive,
-- router/archive/configs.py). `floor` is the oldest version the hash may hold:
-- each call drops from it up to the window, at most 8, so one call's work stays
-- bounded and the hash shrinks back after the number was lowered.
local kept = tonumber(ARGV[7])
local floor = tonumber(redis.call('HGET', versions, 'floor') or '1')
local moved = floor
while moved <= version - kept and moved < floor + 8 do
  redis.call('HDEL', versions, moved, moved .. ':meta')
  moved = moved + 1
end
redis.call('HSET', versions, 'floor', moved)
-- the archiver's mark (router/archive/events.py) is not the config's: it stays
local arch = redis.call('HGET', KEYS[1], 'arch')
redis.call('DEL', KEYS[1])
-- `vat`: when this version was written; with `version` it names the runtime
-- config the library caches between calls (lib/90_begin.lua)
local rtv = { 'version', version, 'vat', NOW }
if arch then rtv[#rtv + 1] = 'arch'; rtv[#rtv + 1] = arch end
for i = 8, #ARGV do rtv[#rtv + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(rtv))
rt_reset()
-- a roll-back names the version it restores: the audit trail tells it from an edit
record({ type = 'config.updated', version = version, previous = current, rollback_of = rollback_of })
redis.call('PUBLISH', 'router:config', TAG .. '|' .. version)
return { version, NOW }
