-- Agents --------------------------------------------------------------------

-- The fields routing reads from an agent: not its skills (selection reads the one it
-- needs, meets_required) nor every contact it holds (`h:<cid>` of the one contact a
-- release names, when given). A whole record is ~2.5 times the Redis CPU of this read.
-- nil when there is no such agent (`id` is written with every agent).
local function load_agent(aid, cid)
  local v = redis.call('HMGET', ka(aid), 'id', 'st', 'load', 'cap', 'idle', 'pools', 'reason',
                       'since', 'team', 'missed', cid and ('h:' .. cid) or 'id')
  if not v[1] then return nil end
  local a = { id = v[1], st = v[2] or nil, load = v[3] or nil, cap = v[4] or nil,
              idle = v[5] or nil, pools = v[6] or nil, reason = v[7] or nil,
              since = v[8] or nil, team = v[9] or nil, missed = v[10] or nil }
  if cid and v[11] then a['h:' .. cid] = v[11] end
  return a
end

-- "pool=score,pool=score" -> list of {name, score} (shared: read only)
local function agent_pools(a)
  local key = 'a' .. (a.pools or '')
  local out = parsed(key)
  if out then return out end
  out = {}
  for _, part in ipairs(split(a.pools, ',')) do
    local eq = string.find(part, '=', 1, true)
    out[#out + 1] = { string.sub(part, 1, eq - 1), tonumber(string.sub(part, eq + 1)) }
  end
  return keep_parsed(key, out)
end

-- Caches the runtime fields of the agent's pools, then of their channels: two
-- reads, before the loops over them (ready sets, queues) read each.
local function load_pools(aps)
  local names = {}
  for i, ps in ipairs(aps) do names[i] = 'pool:' .. ps[1] end
  rt_many(names)
  local chs = {}
  for _, ps in ipairs(aps) do
    local p = pool(ps[1])
    if p then
      for _, ch in ipairs(p.channels) do chs[#chs + 1] = 'ch:' .. ch end
    end
  end
  rt_many(chs)
end

local function strategy_score(a, strategy, skill)
  local idle = tonumber(a.idle) - EPOCH
  if strategy == 'most_skilled' then
    return (100 - skill) * SCORE_STEP + idle
  elseif strategy == 'least_occupied' then
    local occ = math.floor(tonumber(a.load) * 1000 / math.max(tonumber(a.cap), 1))
    return occ * SCORE_STEP + idle
  end
  return idle
end

-- Puts the agent into exactly the ready sets it qualifies for now (state
-- available and room for the channel's weight) and keeps the staffed sets
-- (`load_only`: only its load or idle time changed, never its state, so its
-- staffed sets are as its last state change left them).
local function refresh_agent(a, load_only)
  local free = tonumber(a.cap) - tonumber(a.load)
  local open = a.st == 'available'
  local aps = agent_pools(a)
  load_pools(aps)
  for _, ps in ipairs(aps) do
    local pname, skill = ps[1], ps[2]
    local p = pool(pname)
    if p then
      -- formatted once for the pool's channels (a number argument is formatted per call)
      local score = string.format('%d', strategy_score(a, p.strategy, skill))
      for _, ch in ipairs(p.channels) do
        local c = channel(ch)
        if open and c and c.w <= free then
          redis.call('ZADD', kr(pname, ch), score, a.id)
        else
          redis.call('ZREM', kr(pname, ch), a.id)
        end
      end
      if load_only then
        -- staffed sets unchanged
      elseif a.st == 'offline' then
        redis.call('SREM', ks(pname), a.id)
      else
        redis.call('SADD', ks(pname), a.id)
      end
    end
  end
end

-- Removes the agent from every set of the given pools (membership change).
local function drop_agent_from_pools(aid, pools_csv)
  for _, part in ipairs(split(pools_csv, ',')) do
    local pname = string.sub(part, 1, string.find(part, '=', 1, true) - 1)
    local p = pool(pname)
    if p then
      for _, ch in ipairs(p.channels) do redis.call('ZREM', kr(pname, ch), aid) end
    end
    redis.call('SREM', km(pname), aid)
    redis.call('SREM', ks(pname), aid)
  end
end

-- `a` as loaded holds its `h:` fields (offer and release keep them up to
-- date); one it lacks is read. Its load is as stored (see offer), so the new
-- one is written outright; `idle`: the agent's idle time starts now, in the
-- same write.
local function release(a, cid, idle)
  local held = a['h:' .. cid]
  if held == nil then held = redis.call('HGET', ka(a.id), 'h:' .. cid) end
  local w = tonumber(held or '0')
  if w > 0 then
    redis.call('HDEL', ka(a.id), 'h:' .. cid)
    a['h:' .. cid] = nil
    a.load = tostring(tonumber(a.load or '0') - w)
    if idle then
      a.idle = tostring(NOW)
      redis.call('HSET', ka(a.id), 'load', a.load, 'idle', NOWS)
    else
      redis.call('HSET', ka(a.id), 'load', a.load)
    end
  end
  return w
end

-- Moves agent a to state `new` (`stored` is the reason kept with it: the
-- not-ready code of a break, else ''); `why` is the reason given for the
-- change. The time in state starts again (`since`), and the event carries the
-- state left, its reason and since when it lasted, so the archive writes the
-- interval from the event alone (router/archive/agent_states.py).
local function change_agent_state(a, new, stored, why)
  local ev = { type = 'agent.state_changed', agent = a.id, state = new, previous = a.st,
               reason = (why ~= nil and why ~= '') and why or nil,
               previous_reason = (a.reason ~= nil and a.reason ~= '') and a.reason or nil,
               previous_since = tonumber(a.since or ''),
               team = (a.team ~= nil and a.team ~= '') and a.team or nil }
  a.st, a.reason, a.since = new, stored, tostring(NOW)
  redis.call('HSET', ka(a.id), 'st', new, 'reason', stored, 'since', NOWS)
  record(ev)
end
