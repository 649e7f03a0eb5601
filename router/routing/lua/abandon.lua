-- The customer left: from any non-terminal state; frees whatever it held.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] reason
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st == 'completed' or c.st == 'abandoned' or c.st == 'expired' then
  return { -2, c.st, 'contact already ended' }
end
local prev = c.st
-- the pool it was offered from, else the first it waited in
local where = (c.pool ~= nil and c.pool ~= '') and c.pool or reached_pools(c)[1]
if prev == 'queued' or prev == 'offered' then  -- left unanswered (service level)
  stat(where, 'abandoned', 1, 'abandon_wait_ms', NOW - tonumber(c.enq))
end
if prev == 'queued' then dequeue(c) end
local w, a = release_holder(c)
finish(c, 'abandoned')
record({ type = 'contact.abandoned', contact = c.id, agent = a and a.id or nil, pool = where,
         state = 'abandoned', previous = prev, released = w,
         load = a and tonumber(a.load) or nil, wait_ms = NOW - tonumber(c.enq),
         reason = ARGV[2] ~= '' and ARGV[2] or nil })
if a then
  agent_pull(a)
  notify_agent(a.id)
end
return { 1, contact_reply(c) }
