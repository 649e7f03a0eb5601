-- A page of a workspace's config history, newest first: each version's metadata
-- (`<v>:meta`), never the documents. Read-only and without the routing library.
--
-- KEYS: [1] config hash `{ws:<name>}:config`, [2] history `{ws:<name>}:config:versions`
-- ARGV: [1] list versions below this one (0: from the current), [2] at most this many
-- Returns {current version, more (0/1), entry...}: an entry is the meta JSON, or,
-- for a current version written before history was kept (config_put.lua adds it at
-- the next write), {doc, updated_at, actor} from the config hash.
local cur = redis.call('HMGET', KEYS[1], 'version', 'doc', 'updated_at', 'actor')
local current = tonumber(cur[1] or '0')
if current == 0 then return { 0, 0 } end
local before, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = current
if before > 0 and before <= current then v = before - 1 end
local out = { current, 0 }
while v >= 1 and #out - 2 < limit do
  local m = redis.call('HGET', KEYS[2], v .. ':meta')
  if not m then
    if v ~= current then break end  -- older than the history: none kept
    m = { cur[2], cur[3], cur[4] }
  end
  out[#out + 1] = m
  v = v - 1
end
if v >= 1 and redis.call('HEXISTS', KEYS[2], v .. ':meta') == 1 then out[2] = 1 end
return out
