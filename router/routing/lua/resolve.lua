-- The gateway marks the case resolved: every clock still running is reached
-- (met, or missed once breached). The contact's routing state is untouched.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] reason
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st == 'abandoned' or c.st == 'expired' then
  return { -2, c.st, 'contact ended without being served' }
end
if not c.resolved or c.resolved == '' then
  redis.call('HSET', KEYS[2], 'resolved', NOW)
  sla_stop_all(c, true)
  record({ type = 'contact.resolved', contact = c.id, state = c.st,
           reason = ARGV[2] ~= '' and ARGV[2] or nil })
end
return { 1, contact_reply(c) }
