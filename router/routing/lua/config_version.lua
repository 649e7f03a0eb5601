-- One version of a workspace's config: its metadata and document, in one
-- read-only call (without the routing library).
--
-- KEYS: [1] config hash `{ws:<name>}:config`, [2] history `{ws:<name>}:config:versions`
-- ARGV: [1] version
-- Returns {meta JSON, doc}; for a current version written before history was kept
-- {'', doc, updated_at, actor} from the config hash; {} for an unknown version.
local v = ARGV[1]
local got = redis.call('HMGET', KEYS[2], v .. ':meta', v)
if got[1] and got[2] then return { got[1], got[2] } end
local cur = redis.call('HMGET', KEYS[1], 'version', 'doc', 'updated_at', 'actor')
if cur[1] == v then return { '', cur[2], cur[3], cur[4] } end
return {}
