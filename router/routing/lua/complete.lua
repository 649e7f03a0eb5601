-- Agent completes an assigned contact (wrap-up follows when the channel has
-- one) or ends its wrap-up early.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] agent id, [3] the contact's real intent as the agent found it, or ''
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
err = holder_check(c, ARGV[2], { assigned = true, wrap_up = true })
if err then return err end
-- runtime fields a completion reads, in one read (lib/10_runtime.lua)
rt_many({ 'ch:' .. c.ch, 'events_maxlen', 'arch', 'retention_s' })
set_disposition(c, ARGV[3])
local chn = channel(c.ch)
if c.st == 'assigned' and chn and chn.wrap > 0 then
  c.st = 'wrap_up'
  STATES[c.id] = 'wrap_up'
  redis.call('HSET', KEYS[2], 'st', 'wrap_up', 'wrap', NOWS)
  add_timer(NOW + chn.wrap, 'wrap|' .. c.id .. '|' .. c.og)
  record({ type = 'contact.wrap_up', contact = c.id, agent = c.agent, pool = c.pool,
           state = 'wrap_up', wrap_up_ms = chn.wrap })
else
  redis.call('ZREM', K_TIMERS, 'wrap|' .. c.id .. '|' .. c.og)
  complete_now(c)
end
return { 1, contact_reply(c) }
