-- Resumes a paused clock with a schedule the router computed from the budget
-- left (calendar arithmetic lives in Python). Refused when the clock changed
-- since the router read it (generation), so the router reads and retries.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] clock, [3] generation read, [4] budget used ms,
--       [5] breach delta ms (-1: already breached), [6] steps "i.delta,...",
--       [7] fingerprint of the clock's definition it was planned with
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
local clock, key = ARGV[2], ksla(c.id)
local s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', clock .. '.pst',
                     clock .. '.pause', clock .. '.paused')
if s[1] ~= 'paused' then
  return { -2, s[1] or 'none', 'the ' .. clock .. ' clock is not paused' }
end
if s[2] ~= ARGV[3] then return { -4, s[2] } end
local paused = (tonumber(s[5]) or 0) + NOW - tonumber(s[4])
local steps = sla_schedule(c.id, clock, ARGV[6], s[2])
redis.call('HSET', key, clock .. '.st', s[3], clock .. '.run', NOW, clock .. '.used', ARGV[4],
           clock .. '.steps', steps, clock .. '.paused', paused, clock .. '.pause', '',
           clock .. '.fp', ARGV[7])
if tonumber(ARGV[5]) >= 0 then redis.call('HSET', key, clock .. '.due', NOW + tonumber(ARGV[5])) end
record({ type = 'sla.resumed', contact = c.id, clock = clock, used_ms = tonumber(ARGV[4]),
         paused_ms = NOW - tonumber(s[4]) })
return { 1, contact_reply(c) }
