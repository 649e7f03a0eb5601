-- Changes an agent's state; an agent becoming available takes waiting work.
-- KEYS: [1] runtime hash, [2] agent hash
-- ARGV: [1] actor, [2] state (offline|available|break), [3] reason,
--       [4] '1' when a supervisor signs the agent out (see below)
-- Returns {1, agent hash} or {-1, 'not_found'} or {-2, current state, detail}
-- or {-4, current state, contact ids} (sign-out refused: it holds answered work).
--
-- Offline while holding contacts: the agent's own desktop is refused (it
-- rejects or finishes them first). A supervisor signing it out returns its
-- pending offers to their queues with their rank unchanged (they are not
-- lost), but is refused while it holds answered contacts (assigned or in
-- wrap-up): a customer is on the line, so the supervisor transfers them first.
ACTOR = ARGV[1]
local a = hmap(KEYS[2])
if a == nil then return { -1, 'not_found' } end
local new = ARGV[2]
local old = a.st
local offers = {}
if new == 'offline' and tonumber(a.load) > 0 then
  if ARGV[4] ~= '1' then return { -2, old, 'agent still holds contacts' } end
  local held = {}
  for field, _ in pairs(a) do
    if string.sub(field, 1, 2) == 'h:' then
      local cid = string.sub(field, 3)
      if redis.call('HGET', kc(cid), 'st') == 'offered' then
        offers[#offers + 1] = cid
      else
        held[#held + 1] = cid
      end
    end
  end
  if #held > 0 then
    table.sort(held)
    return { -4, old, held }
  end
  table.sort(offers)
end
if new == 'available' and old ~= 'available' then
  a.idle = tostring(NOW)
  a.missed = '0'
end
redis.call('HSET', KEYS[2], 'idle', a.idle, 'missed', a.missed)
if old ~= new or new == 'break' then
  change_agent_state(a, new, new == 'break' and ARGV[3] or '', ARGV[3])
end
refresh_agent(a)
-- Signed out with offers pending: each goes back to its queues (rank kept) or
-- straight to another ready agent; the agent is offline already, so never to it.
for _, cid in ipairs(offers) do
  local c = load_contact(cid)
  release(a, cid)
  redis.call('ZREM', K_TIMERS, 'offer|' .. cid .. '|' .. c.og)
  redis.call('HSET', kc(cid), 'st', 'queued', 'agent', '', 'oexp', '')
  c.st, c.agent = 'queued', ''
  STATES[cid] = 'queued'
  record({ type = 'contact.offer_returned', contact = cid, agent = a.id, state = 'queued',
           rank = tonumber(c.rank), reason = 'agent signed out' })
  if not try_match(c) then enqueue(c) end
end
if #offers > 0 then refresh_agent(a) end
agent_pull(a)
notify_agent(a.id)
return { 1, redis.call('HGETALL', KEYS[2]) }
