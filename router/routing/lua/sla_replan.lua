-- Replaces a running clock's schedule after its definition changed (config:
-- ladder, target or calendar), keeping the budget it has used. Refused when the
-- clock moved since the router read it (generation); the router reads again.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] clock, [3] generation read, [4] budget used ms,
--       [5] breach delta ms (-1: already breached), [6] steps "i.delta,...",
--       [7] new fingerprint
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
local clock, key = ARGV[2], ksla(c.id)
local s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', clock .. '.steps')
if not RUNNING[s[1]] then return { -2, s[1] or 'none', 'the ' .. clock .. ' clock is not running' } end
if s[2] ~= ARGV[3] then return { -4, s[2] } end
for _, i in ipairs(split(s[3], ',')) do
  redis.call('ZREM', K_TIMERS, sla_member(c.id, clock, i, s[2]))
end
local g = tonumber(s[2]) + 1
local steps = sla_schedule(c.id, clock, ARGV[6], g)
redis.call('HSET', key, clock .. '.g', g, clock .. '.run', NOW, clock .. '.used', ARGV[4],
           clock .. '.steps', steps, clock .. '.fp', ARGV[7])
local ev = { type = 'sla.replanned', contact = c.id, clock = clock, used_ms = tonumber(ARGV[4]) }
if tonumber(ARGV[5]) >= 0 then
  ev.due = NOW + tonumber(ARGV[5])
  redis.call('HSET', key, clock .. '.due', ev.due)
end
record(ev)
return { 1, contact_reply(c) }
