-- Changes an agent's state; an agent becoming available takes waiting work.
-- KEYS: [1] runtime hash, [2] agent hash
-- ARGV: [1] actor, [2] state (offline|available|break), [3] reason
-- Returns {1, agent hash} or {-1, 'not_found'} or {-2, current state, detail}.
ACTOR = ARGV[1]
local a = hmap(KEYS[2])
if a == nil then return { -1, 'not_found' } end
local new = ARGV[2]
local old = a.st
if new == 'offline' and tonumber(a.load) > 0 then
  return { -2, old, 'agent still holds contacts' }
end
if new == 'available' and old ~= 'available' then
  a.idle = tostring(NOW)
  a.missed = '0'
end
a.st = new
a.reason = new == 'break' and ARGV[3] or ''
redis.call('HSET', KEYS[2], 'st', new, 'reason', a.reason, 'idle', a.idle, 'missed', a.missed)
refresh_agent(a)
if old ~= new or new == 'break' then
  record({ type = 'agent.state_changed', agent = a.id, state = new, previous = old,
           reason = ARGV[3] ~= '' and ARGV[3] or nil })
end
agent_pull(a)
notify_agent(a.id)
return { 1, redis.call('HGETALL', KEYS[2]) }
