-- The first response reached the customer (an email or message answered):
-- the first_response clock is met. Later calls change nothing.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] agent id
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
err = holder_check(c, ARGV[2], { assigned = true, wrap_up = true, completed = true })
if err then return err end
if not c.responded or c.responded == '' then
  redis.call('HSET', KEYS[2], 'responded', NOW)
  if c.sla ~= '' then sla_stop(c.id, 'first_response', true) end
  record({ type = 'contact.responded', contact = c.id, agent = c.agent, state = c.st })
end
return { 1, contact_reply(c) }
