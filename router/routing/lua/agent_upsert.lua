-- Creates or updates an agent's profile; membership follows its skills.
-- KEYS: [1] runtime hash, [2] agent hash, [3] agents set
-- ARGV: [1] actor, [2] id, [3] capacity, [4] team, [5] supervisor,
--       [6] skills JSON, [7] pools "pool=score,...", [8] skills "skill=level,..."
ACTOR = ARGV[1]
local aid = ARGV[2]
local a = hmap(KEYS[2])  -- whole: its skill fields are replaced below
local created = a == nil
if created then
  a = { id = aid, st = 'offline', load = '0', idle = tostring(NOW), missed = '0', reason = '',
        since = tostring(NOW) }
  -- since: when the agent entered its state (time in state, state intervals)
  redis.call('HSET', KEYS[2], 'id', aid, 'st', 'offline', 'load', 0, 'idle', NOW, 'missed', 0,
             'reason', '', 'since', NOW)
  redis.call('SADD', KEYS[3], aid)
else
  drop_agent_from_pools(aid, a.pools)
  for field, _ in pairs(a) do
    if string.sub(field, 1, 2) == 's:' then redis.call('HDEL', KEYS[2], field) end
  end
end
a.cap = ARGV[3]
a.pools = ARGV[7]
redis.call('HSET', KEYS[2], 'cap', ARGV[3], 'team', ARGV[4], 'sup', ARGV[5], 'skills', ARGV[6],
           'pools', ARGV[7])
for _, part in ipairs(split(ARGV[8], ',')) do
  local eq = string.find(part, '=', 1, true)
  redis.call('HSET', KEYS[2], 's:' .. string.sub(part, 1, eq - 1), string.sub(part, eq + 1))
end
for _, ps in ipairs(agent_pools(a)) do redis.call('SADD', km(ps[1]), aid) end
refresh_agent(a)
record({ type = created and 'agent.created' or 'agent.updated', agent = aid,
         cap = tonumber(a.cap), load = tonumber(a.load), pools = a.pools })
agent_pull(a)
notify_agent(aid)
return { created and 1 or 0, redis.call('HGETALL', KEYS[2]) }
