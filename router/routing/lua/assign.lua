-- A supervisor hands a waiting contact to a named agent: it leaves every queue
-- and is offered to that agent at once, with the channel's usual offer timeout
-- (auto-accept channels: assigned). Unlike `transfer` to an agent, which parks
-- the contact in the agent's own queue until it is free, this either offers
-- now or refuses, saying why the agent cannot take it.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] agent id
-- Returns {1, contact hash} | {-1, 'not_found'} | {-2, contact state, detail}
--   | {-3, field, state, detail} (the agent cannot take it now)
--   | {-5, 'agent_id', detail} (no such agent)
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st ~= 'queued' then
  return { -2, c.st, 'only a waiting contact can be assigned; it is ' .. c.st }
end
local a = load_agent(ARGV[2])
if a == nil then return { -5, 'agent_id', 'unknown agent' } end
if a.st ~= 'available' then
  return { -3, 'agent_id', a.st, 'agent ' .. a.id .. ' is ' .. a.st .. ', not available' }
end
-- the first pool the contact reached (stage order) whose skills the agent has
-- and which serves the contact's channel
local member = {}
for _, ps in ipairs(agent_pools(a)) do member[ps[1]] = true end
local skilled, pname = false, nil
for _, p in ipairs(reached_pools(c)) do
  if member[p] then
    skilled = true
    local def = pool(p)
    if def then
      for _, ch in ipairs(def.channels) do if ch == c.ch then pname = p end end
    end
    if pname then break end
  end
end
if not skilled or not meets_required(a.id, c.req) then
  return { -3, 'skills', 'ineligible',
           'agent ' .. a.id .. ' lacks the skills of every pool the contact reached' }
end
if pname == nil then
  return { -3, 'channel', 'ineligible', 'agent ' .. a.id .. ' serves no pool of channel ' .. c.ch }
end
local free = tonumber(a.cap) - tonumber(a.load)
if tonumber(c.w) > free then
  return { -3, 'capacity', 'full', 'agent ' .. a.id .. ' is full: load ' .. a.load .. ' + weight ' ..
           c.w .. ' > capacity ' .. a.cap }
end
-- the supervisor's choice overrides continuity and a recent rejection
c.pref = ''
offer(c, a, pname, { pool = pname, winner = a.id, by = ACTOR, why = 'assigned by a supervisor',
                     rank = rank_parts(c) })
redis.call('HSET', KEYS[2], 'tgt', '', 'pref', '')
return { 1, contact_reply(c) }
