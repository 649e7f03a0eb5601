-- Agents freed: the best waiting contact; bullseye stages ---------------------

-- The best-ranked waiting contact agent a can take now, across its pools
-- (queues of channels whose weight fits its free capacity) and its own queue.
local function best_waiting(a)
  local free = tonumber(a.cap) - tonumber(a.load)
  local best_id, best_rank, best_pool = nil, nil, nil
  local function scan(key, pname)
    local items = redis.call('ZRANGE', key, '0', SCAN_LIMIT_LAST, 'WITHSCORES')
    for i = 1, #items, 2 do
      local rank = tonumber(items[i + 1])
      if best_rank ~= nil and rank >= best_rank then return end
      local cid = items[i]
      local f = redis.call('HMGET', kc(cid), 'st', 'w', 'x:' .. a.id, 'pref', 'prefu', 'req')
      local ok = f[1] == 'queued' and tonumber(f[2]) <= free
        and not (f[3] and tonumber(f[3]) > NOW)
        and meets_required(a.id, f[6])
      if ok and f[4] and f[4] ~= a.id and tonumber(f[5] or '0') > NOW then
        ok = not preference_blocks({ id = cid, pref = f[4], prefu = f[5] }, a.id)
      end
      if ok then
        best_id, best_rank, best_pool = cid, rank, pname
        return
      end
    end
  end
  scan(kaq(a.id), '')
  local aps = agent_pools(a)
  load_pools(aps)
  for _, ps in ipairs(aps) do
    local p = pool(ps[1])
    -- every contact queued in a pool is in its age set too (lib/40_contacts.lua
    -- enqueue, dequeue): an empty pool is one check, not one per channel
    if p and redis.call('EXISTS', kqa(ps[1])) == 1 then
      for _, ch in ipairs(p.channels) do
        local c = channel(ch)
        if c and c.w <= free then scan(kq(ps[1], ch), ps[1]) end
      end
    end
  end
  return best_id, best_rank, best_pool
end

-- An agent with free capacity takes the best-ranked waiting contacts, one
-- after another, while it has room (several chats at once).
local function agent_pull(a)
  for _ = 1, MAX_PULLS do
    if a.st ~= 'available' then return end
    local cid, rank, pname = best_waiting(a)
    if cid == nil then return end
    local c = load_contact(cid)
    offer(c, a, pname, { pool = pname, winner = a.id, rank = rank_parts(c),
                         why = 'agent freed: best-ranked waiting contact across its pools' })
  end
end

local function pull_for(aid)
  local a = load_agent(aid)
  if a then agent_pull(a) end
end

-- Expected wait of a pool: contacts ahead times average handle time spread
-- over the staffed agents (0 when an agent is ready; huge when none staffed).
local function expected_wait(pname, ch)
  local p = pool(pname)
  if not p then return 1e18 end
  if redis.call('ZCARD', kr(pname, ch)) > 0 then return 0 end
  local staffed = redis.call('SCARD', ks(pname))
  if staffed == 0 then return 1e18 end
  local aht = tonumber(redis.call('HGET', kps(pname), 'aht') or p.aht)
  return (redis.call('ZCARD', kqa(pname)) + 1) * aht / staffed
end

-- Schedules the timer of the next unreached stage, if any.
local function schedule_next_stage(c)
  local st = stages_of(c)
  local nxt = tonumber(c.stage) + 1
  if nxt <= #st then
    add_timer(tonumber(c.enq) + st[nxt][1], 'stage|' .. c.id .. '|' .. nxt)
  end
end

-- Reaches every stage whose time has come or, while the pools reached so far
-- expect a wait over the rule's overflow threshold, the next one at once.
local function advance_stages(c)
  local st = stages_of(c)
  local stage = tonumber(c.stage)
  local reasons = {}
  local ovf = tonumber(c.ovf or '')
  while stage < #st do
    local nxt = st[stage + 1]
    if tonumber(c.enq) + nxt[1] <= NOW then
      stage = stage + 1
      reasons[#reasons + 1] = { stage = stage, why = 'time' }
    elseif ovf then
      c.stage = tostring(stage)
      local best = 1e18
      for _, p in ipairs(reached_pools(c)) do best = math.min(best, expected_wait(p, c.ch)) end
      if best > ovf then
        stage = stage + 1
        reasons[#reasons + 1] = { stage = stage, why = 'overflow', expected_wait_ms = best }
      else
        break
      end
    else
      break
    end
  end
  c.stage = tostring(stage)
  return reasons
end
