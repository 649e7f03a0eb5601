-- Agent rejects its offer: back to the queues with rank unchanged.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] agent id, [3] reason
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
err = holder_check(c, ARGV[2], { offered = true })
if err then return err end
requeue_offer(c, load_agent(c.agent), false, ARGV[3] ~= '' and ARGV[3] or nil)
return { 1, contact_reply(c) }
