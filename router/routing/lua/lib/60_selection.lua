-- Agent selection: eligibility, ranking and offers ---------------------------

-- Does the agent meet the contact's own skill requirements ("skill:min,...")?
local function meets_required(aid, req)
  if req == nil or req == '' then return true end
  for _, r in ipairs(split(req, ',')) do
    local colon = string.find(r, ':', 1, true)
    local lvl = redis.call('HGET', ka(aid), 's:' .. string.sub(r, 1, colon - 1))
    if not lvl or tonumber(lvl) < tonumber(string.sub(r, colon + 1)) then return false end
  end
  return true
end

local function avoided(c, aid)
  local until_ = c['x:' .. aid]
  return until_ ~= nil and tonumber(until_) > NOW
end

-- While a preferred (continuity) agent is online, only that agent may take
-- the contact until the preference runs out.
local function preference_blocks(c, aid)
  if not c.pref or c.pref == '' or c.pref == aid then return false end
  if tonumber(c.prefu or '0') <= NOW then return false end
  -- nobody waits for a preferred agent who rejected or missed this very contact
  local x = redis.call('HGET', kc(c.id), 'x:' .. c.pref)
  if x and tonumber(x) > NOW then return false end
  local st = redis.call('HGET', ka(c.pref), 'st')
  return st == 'available' or st == 'break'
end

local function rank_parts(c)
  return { rank = tonumber(c.rank), enqueued_at = tonumber(c.enq),
           priority_offset_ms = tonumber(c.off) }
end

-- Offers (or, for auto-accept channels, assigns) contact c to agent a.
local function offer(c, a, pname, explain)
  local w = tonumber(c.w)
  -- `a` holds the agent's load as stored (load_agent; offer and release keep it
  -- so), and `c` its offer generation (every loaded or created contact): both
  -- written outright, with the fields they go with, not incremented apart
  a['h:' .. c.id] = tostring(w)
  a.load = tostring(tonumber(a.load or '0') + w)
  a.idle = tostring(NOW)
  redis.call('HSET', ka(a.id), 'h:' .. c.id, a['h:' .. c.id], 'idle', NOWS, 'load', a.load)
  refresh_agent(a, true)
  dequeue(c)
  local og = tostring(tonumber(c.og or '0') + 1)
  c.og = og
  local chn = channel(c.ch)
  local ev = { type = 'contact.offered', contact = c.id, agent = a.id, pool = pname,
               w = w, load = tonumber(a.load), cap = tonumber(a.cap), explain = explain }
  if chn and chn.auto then
    redis.call('HSET', kc(c.id), 'st', 'assigned', 'agent', a.id, 'pool', pname, 'ans', NOWS,
               'og', og)
    stat_answer(c, pname)
    c.st = 'assigned'
    STATES[c.id] = 'assigned'
    ev.type = 'contact.assigned'
    ev.auto = true
    redis.call('SET', kla(c.cust), a.id, 'PX', math.max(rt_num('cont_window_ms', 0), 1))
    if c.sla and c.sla ~= '' then sla_stop(c.id, 'answer', true) end
  else
    local to = chn and chn.to or 20000
    -- an archived workspace lists the contact's holders (record, lib/20_events.lua):
    -- written with the offer, record then finds the agent listed
    local hd = rt('arch') == '1' and holders_with(c.hd or '', a.id)
    if hd then
      c.hd = hd
      redis.call('HSET', kc(c.id), 'st', 'offered', 'agent', a.id, 'pool', pname,
                 'oexp', string.format('%d', NOW + to), 'og', og, 'hd', hd)
    else
      redis.call('HSET', kc(c.id), 'st', 'offered', 'agent', a.id, 'pool', pname,
                 'oexp', string.format('%d', NOW + to), 'og', og)
    end
    c.st = 'offered'
    STATES[c.id] = 'offered'
    add_timer(NOW + to, 'offer|' .. c.id .. '|' .. og)
  end
  c.agent = a.id
  ev.state = c.st
  record(ev, c)
  notify_agent(a.id)
end

-- Best eligible ready agent for contact c across its reached pools, in stage
-- order (the first stage pool with a free agent wins).
local function select_agent(c)
  local pools = reached_pools(c)
  local considered = {}
  local waiting_pref = false
  for _, pname in ipairs(pools) do
    local p = pool(pname)
    if p then
      -- the first few ready agents, the rest of SCAN_LIMIT only when none of
      -- them is eligible: the first nearly always is
      local cands = redis.call('ZRANGE', kr(pname, c.ch), '0', FIRST_SCAN_LAST, 'WITHSCORES')
      -- a ready preferred agent wins regardless of its place in the strategy order
      if c.pref and c.pref ~= '' and tonumber(c.prefu or '0') > NOW then
        local sc = redis.call('ZSCORE', kr(pname, c.ch), c.pref)
        if sc and not avoided(c, c.pref) and meets_required(c.pref, c.req) then
          return c.pref, pname, { pool = pname, strategy = p.strategy, winner = c.pref,
            why = 'preferred agent (served this customer recently)', rank = rank_parts(c),
            candidates = { { agent = c.pref, score = tonumber(sc) } } }
        end
      end
      local i = 1
      while i < #cands do
        local aid = cands[i]
        local why = nil
        if avoided(c, aid) then
          why = 'recently rejected or missed this contact'
        elseif not meets_required(aid, c.req) then
          why = 'lacks a required skill'
        elseif preference_blocks(c, aid) then
          why = 'waiting for preferred agent'
          waiting_pref = true
        end
        considered[#considered + 1] = { agent = aid, pool = pname, score = tonumber(cands[i + 1]),
                                        skipped = why }
        if why == nil then
          return aid, pname, { pool = pname, strategy = p.strategy, winner = aid,
            why = 'first eligible ready agent by ' .. p.strategy .. ' (ties: longest idle)',
            rank = rank_parts(c), candidates = considered }
        end
        i = i + 2
        if i > #cands and #cands == 2 * FIRST_SCAN then
          local more = redis.call('ZRANGE', kr(pname, c.ch), FIRST_SCAN, SCAN_LIMIT_LAST,
                                  'WITHSCORES')
          for j = 1, #more do cands[#cands + 1] = more[j] end
        end
      end
    end
  end
  return nil, nil, { candidates = considered, waiting_preferred = waiting_pref }
end

-- Tries to place contact c with a ready agent now; true when offered.
local function try_match(c)
  if c.tgt and c.tgt ~= '' then
    local a = load_agent(c.tgt)
    if a and a.st == 'available' and tonumber(a.cap) - tonumber(a.load) >= tonumber(c.w) then
      offer(c, a, '', { winner = a.id, why = 'transferred to this agent', rank = rank_parts(c) })
      return true
    end
    return false
  end
  local aid, pname, explain = select_agent(c)
  if aid == nil then return false end
  offer(c, load_agent(aid), pname, explain)
  return true
end
