-- Pauses a running SLA clock (e.g. waiting on the customer): its timers are
-- removed; the router computes the remaining budget when it resumes.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] clock, [3] reason
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
local clock, key = ARGV[2], ksla(c.id)
local s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', clock .. '.steps')
if not RUNNING[s[1]] then
  return { -2, s[1] or 'none', 'the ' .. clock .. ' clock is not running' }
end
for _, i in ipairs(split(s[3], ',')) do
  redis.call('ZREM', K_TIMERS, sla_member(c.id, clock, i, s[2]))
end
redis.call('HSET', key, clock .. '.st', 'paused', clock .. '.pst', s[1], clock .. '.pause', NOW,
           clock .. '.g', tonumber(s[2]) + 1, clock .. '.steps', '')
record({ type = 'sla.paused', contact = c.id, clock = clock, previous = s[1],
         reason = ARGV[3] ~= '' and ARGV[3] or nil })
return { 1, contact_reply(c) }
