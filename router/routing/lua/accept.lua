-- Agent accepts its offer: the contact is assigned (answer time recorded).
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] agent id
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
err = holder_check(c, ARGV[2], { offered = true })
if err then return err end
-- runtime fields every accept reads, in one read (lib/10_runtime.lua)
rt_many({ 'cont_window_ms', 'pool:' .. (c.pool or ''), 'events_maxlen', 'arch' })
redis.call('ZREM', K_TIMERS, 'offer|' .. c.id .. '|' .. c.og)
-- the record's writes, the answer clock's with them: one HSET
local flat = { 'st', 'assigned', 'ans', NOWS, 'oexp', '' }
-- c as read above: nothing here writes a clock before this
if c.sla and c.sla ~= '' then sla_stop(c.id, 'answer', true, c, flat) end
redis.call('HSET', KEYS[2], unpack(flat))
c.st = 'assigned'
STATES[c.id] = 'assigned'
redis.call('HSET', ka(c.agent), 'missed', '0')
redis.call('SET', kla(c.cust), c.agent, 'PX', math.max(rt_num('cont_window_ms', 0), 1))
stat_answer(c, c.pool)
record({ type = 'contact.assigned', contact = c.id, agent = c.agent, pool = c.pool,
         state = 'assigned', wait_ms = NOW - tonumber(c.enq) }, c)
notify_agent(c.agent)  -- the offer leaves the desktop's list (every open desktop)
return { 1, contact_reply(c) }
