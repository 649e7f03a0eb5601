-- Moves a contact to another pool or to a named agent, keeping its original
-- rank (it does not lose its place by age).
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] pool or '', [3] agent id or '', [4] reason
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st ~= 'queued' and c.st ~= 'offered' and c.st ~= 'assigned' then
  return { -2, c.st, 'cannot transfer in state ' .. c.st }
end
local target_pool, target_agent = ARGV[2], ARGV[3]
if target_pool ~= '' then
  local p = pool(target_pool)
  local serves = false
  if p then for _, ch in ipairs(p.channels) do if ch == c.ch then serves = true end end end
  if not serves then return { -3, 'pool', 'pool does not exist or does not serve ' .. c.ch } end
elseif redis.call('EXISTS', ka(target_agent)) == 0 then
  return { -3, 'agent_id', 'unknown agent' }
end
local prev = c.st
-- where it waited before, for the audit trail (before/after)
local from_agent = (c.tgt and c.tgt ~= '') and c.tgt or nil
local from_pools = from_agent == nil and reached_pools(c) or {}
if prev == 'queued' then dequeue(c) end
redis.call('ZREM', K_TIMERS, 'offer|' .. c.id .. '|' .. c.og)
local w, a = release_holder(c)
c.agent = ''
c.tgt = target_agent
-- an explicit transfer overrides continuity: do not wait for (or return to) the preferred agent
c.pref = ''
if target_pool ~= '' then
  c.stages = '0:' .. target_pool
  c.stage = '1'
end
redis.call('HSET', KEYS[2], 'st', 'queued', 'agent', '', 'oexp', '', 'tgt', c.tgt,
           'stages', c.stages, 'stage', c.stage, 'ans', '', 'pref', '')
c.st = 'queued'
STATES[c.id] = 'queued'
record({ type = 'contact.transferred', contact = c.id, agent = a and a.id or nil,
         state = 'queued', previous = prev, released = w, load = a and tonumber(a.load) or nil,
         from_pools = #from_pools > 0 and from_pools or nil, from_agent = from_agent,
         to_pool = target_pool ~= '' and target_pool or nil,
         to_agent = target_agent ~= '' and target_agent or nil,
         reason = ARGV[4] ~= '' and ARGV[4] or nil })
if not try_match(c) then enqueue(c) end
if a then
  agent_pull(a)
  notify_agent(a.id)
end
return { 1, contact_reply(c) }
