-- Contact endings, re-queues and holders --------------------------------------

-- Ends a contact: timers are left to find it terminal; data expires later.
local function finish(c, st)
  c.st = st
  STATES[c.id] = st
  redis.call('HSET', kc(c.id), 'st', st, 'done', NOWS)
  -- the customer left (or waited too long): no clock can be met any more; a
  -- completed case keeps its resolve clock until the gateway resolves it
  if st ~= 'completed' then sla_stop_all(c, false) end
  -- retention.contacts of the config (router/routing/config.py), 30 days by default
  local ttl = rt('retention_s') or '2592000'
  redis.call('EXPIRE', kc(c.id), ttl)
  redis.call('EXPIRE', ktl(c.id), ttl)
end

-- A function that answers with the contact returns `{ code, contact_reply(c) }`,
-- which is `{ code }`: the router reads the record (KEYS[2]) right after the call,
-- in the same transaction (router/store/scripts.py Function.record). Returned
-- from here, every field would be turned into a Lua string and back.
local function contact_reply(_)
  return nil
end

-- Returns an offered contact to its queues with its rank unchanged (reject or
-- offer timeout), keeps the agent away from it for a while, lets another
-- ready agent take it, then lets the agent take other work.
local function requeue_offer(c, a, timeout, reason)
  local w = release(a, c.id)
  redis.call('ZREM', K_TIMERS, 'offer|' .. c.id .. '|' .. c.og)
  local avoid = NOW + rt_num('reoffer_ms', 60000)
  c['x:' .. a.id] = tostring(avoid)
  redis.call('HSET', kc(c.id), 'st', 'queued', 'agent', '', 'oexp', '', 'x:' .. a.id, avoid)
  c.st = 'queued'
  STATES[c.id] = 'queued'
  c.agent = ''
  local missed = 0
  if timeout then
    missed = redis.call('HINCRBY', ka(a.id), 'missed', '1')
  else
    redis.call('HSET', ka(a.id), 'missed', '0')
  end
  record({ type = timeout and 'contact.offer_timeout' or 'contact.rejected', contact = c.id,
           agent = a.id, state = 'queued', released = w, load = tonumber(a.load),
           cap = tonumber(a.cap), reason = reason })
  if timeout and missed >= rt_num('missed_after', 3) and a.st == 'available' then
    change_agent_state(a, 'missed', 'missed offers', missed .. ' consecutive offer timeouts')
  end
  refresh_agent(a)
  if not try_match(c) then enqueue(c) end
  agent_pull(a)
  notify_agent(a.id)
end

-- Releases whatever agent holds c (if any) and lets it take the next contact.
local function release_holder(c)
  if c.agent == nil or c.agent == '' then return 0, nil end
  local a = load_agent(c.agent, c.id)
  if a == nil then return 0, nil end
  -- idle time (longest_idle, ties) counts from the end of the agent's last contact
  local w = release(a, c.id, true)
  refresh_agent(a, true)
  return w, a
end

-- Moves a running average of handle time (ms) for expected-wait estimates.
local function note_handle_time(pname, ms)
  if pname == nil or pname == '' then return end
  local key = kps(pname)
  local old = tonumber(redis.call('HGET', key, 'aht') or '')
  local new = old and (old * 0.9 + ms * 0.1) or ms
  redis.call('HSET', key, 'aht', math.floor(new))
end

-- Wrap-up over (or none): the contact completes and its capacity is freed.
local function complete_now(c)
  local w, a = release_holder(c)
  finish(c, 'completed')
  if c.ans and c.ans ~= '' then
    note_handle_time(c.pool, NOW - tonumber(c.ans))
    stat(c.pool, 'handled', 1, 'handle_ms', NOW - tonumber(c.ans))
  end
  record({ type = 'contact.completed', contact = c.id, agent = c.agent, pool = c.pool,
           state = 'completed', released = w, load = a and tonumber(a.load) or nil }, c)
  handoff_outcome(c)
  if a then
    agent_pull(a)
    notify_agent(a.id)
  end
end

local function require_contact(key)
  local c = hmap(key)
  if c == nil then return nil, { -1, 'not_found' } end
  return c, nil
end

local function holder_check(c, aid, wanted)
  if not wanted[c.st] then return { -2, c.st, 'not allowed in state ' .. c.st } end
  if c.agent ~= aid then return { -2, c.st, 'contact is held by another agent' } end
  return nil
end
