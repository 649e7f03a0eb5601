-- The holding agent's outcome of one callback dial. answered: the contact goes
-- on as a normal assigned contact. no_answer / busy: the agent is free at once
-- (a dial nobody took leaves no after-call work), and the callback waits out
-- the retry gap, out of every queue, then comes back with its rank unchanged;
-- after the last attempt it ends `abandoned`, reason `callback_unreached`.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] agent id, [3] outcome answered|no_answer|busy
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
err = holder_check(c, ARGV[2], { assigned = true })
if err then return err end
if not c.cb then return { -2, c.st, 'the contact is not a callback' } end
if c.cbr == '1' then return { -2, c.st, 'the customer was already reached' } end
local outcome = ARGV[3]
local n = tonumber(c.cba or '0') + 1
c.cba = tostring(n)
redis.call('HSET', KEYS[2], 'cba', n)
cb_count(c, outcome)
local ev = { type = 'contact.callback_attempted', contact = c.id, agent = c.agent,
             pool = c.pool, attempt = n, max_attempts = tonumber(c.cbm), outcome = outcome }
if outcome == 'answered' then
  c.cbr = '1'
  redis.call('HSET', KEYS[2], 'cbr', 1)
  cb_count(c, 'reached')
  ev.state = 'assigned'
  record(ev)
  return { 1, contact_reply(c) }
end
local w, a = release_holder(c)
ev.released, ev.load = w, a and tonumber(a.load) or nil
if n < tonumber(c.cbm) then
  local at = NOW + tonumber(c.cbg)
  ev.state, ev.next_attempt_at = 'scheduled', at
  record(ev)
  cb_hold(c, at, c.cba)
else
  ev.state = 'abandoned'
  record(ev)
  redis.call('HSET', KEYS[2], 'agent', '')
  finish(c, 'abandoned')
  cb_count(c, 'unreached')
  -- the attempt's event released the agent: this one holds nothing more to release
  record({ type = 'contact.abandoned', contact = c.id, pool = c.pool, state = 'abandoned',
           previous = 'assigned', released = 0, attempts = n, reason = 'callback_unreached' })
end
if a then
  agent_pull(a)
  notify_agent(a.id)
end
return { 1, contact_reply(c) }
