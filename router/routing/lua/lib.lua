-- Shared routing library: the top of the `router` Redis Functions library
-- (router/routing/library.py appends each routing script as a registered function).
--
-- KEYS[1] is always the workspace's runtime hash `{ws:<name>}:rt`. Every other
-- key is built from its hash tag, so all keys live on one Cluster slot; which
-- agent or contact a decision touches is only known inside the script, which
-- is why keys are derived here rather than listed in KEYS (key names mirror
-- router/store/keys.py). Loops are bounded by the config (pools x channels) or by
-- SCAN_LIMIT, never by the size of a queue or of the agent population.
--
-- Time comes from Redis TIME so that every replica ranks and expires alike.

-- Per-call state: set by begin() at the start of every function call (the
-- library's top level runs once, when it is loaded, not per call).
local KEYS, ARGV, RT_KEY, TAG, NOW, ACTOR
local K_EVENTS, K_TIMERS, K_SLA_RUN, K_COUNTS
local RT, CHANNELS, POOLS, NOTIFIED
-- Queue entries / ready agents looked at per pool and channel per decision.
local SCAN_LIMIT = 16
-- Epoch subtracted from idle times so a strategy score fits a double exactly.
local EPOCH = 1700000000000
local SCORE_STEP = 1000000000000
local MAX_PULLS = 50

local NOTIFY = 'router:notify'

local function kc(cid) return TAG .. ':c:' .. cid end
local function ktl(cid) return TAG .. ':c:' .. cid .. ':tl' end
local function ka(aid) return TAG .. ':a:' .. aid end
local function kq(pool, ch) return TAG .. ':q:' .. pool .. ':' .. ch end
local function kqa(pool) return TAG .. ':qa:' .. pool end
local function kr(pool, ch) return TAG .. ':r:' .. pool .. ':' .. ch end
local function km(pool) return TAG .. ':m:' .. pool end
local function ks(pool) return TAG .. ':s:' .. pool end
local function kps(pool) return TAG .. ':ps:' .. pool end
local function kaq(aid) return TAG .. ':aq:' .. aid end
local function kla(cust) return TAG .. ':la:' .. cust end
local function ksla(cid) return TAG .. ':c:' .. cid .. ':sla' end

local function split(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

local function hmap(key)
  local r = redis.call('HGETALL', key)
  if #r == 0 then return nil end
  local t = {}
  for i = 1, #r, 2 do t[r[i]] = r[i + 1] end
  return t
end

-- Runtime config ------------------------------------------------------------

local function rt(field)
  local v = RT[field]
  if v == nil then
    v = redis.call('HGET', RT_KEY, field) or false
    RT[field] = v
  end
  return v
end

local function rt_num(field, default)
  local v = rt(field)
  if v then return tonumber(v) end
  return default
end

-- ch:<name> = "weight|offer_timeout_ms|auto_accept|wrap_up_ms|max_wait_ms"
local function channel(name)
  local c = CHANNELS[name]
  if c == nil then
    local p = split(rt('ch:' .. name), '|')
    if #p < 5 then
      c = false
    else
      c = { w = tonumber(p[1]), to = tonumber(p[2]), auto = p[3] == '1',
            wrap = tonumber(p[4]), maxw = tonumber(p[5]) }
    end
    CHANNELS[name] = c
  end
  return c
end

-- pool:<name> = "strategy|ch1,ch2|max_queue|handle_time_ms|service_level_ms"
local function pool(name)
  local p = POOLS[name]
  if p == nil then
    local f = split(rt('pool:' .. name), '|')
    if #f < 4 then
      p = false
    else
      p = { strategy = f[1], channels = split(f[2], ','), maxq = tonumber(f[3]),
            aht = tonumber(f[4]), sl = tonumber(f[5] or '20000') }
    end
    POOLS[name] = p
  end
  return p
end

-- Events --------------------------------------------------------------------

-- Appends an event to the workspace stream and, for contacts, to its timeline.
-- Events never carry customer identity or attributes.
-- Statistics for the workforce manager's metrics (router/runtime/metrics.py reads them):
-- running counts per event type and labels in one hash, and per-pool, per-minute
-- buckets (answered, answered within target, wait, abandoned, handled, handle
-- time, arrived) that sliding service-level windows are summed from.
local STAT_TTL = 7200
local ARRIVALS_TTL = 70 * 86400  -- ten weeks: enough history for weekly seasonality
local COUNTED = {
  ['contact.created'] = true, ['contact.offered'] = true, ['contact.assigned'] = true,
  ['contact.rejected'] = true, ['contact.offer_timeout'] = true,
  ['contact.abandoned'] = true, ['contact.completed'] = true,
  ['contact.transferred'] = true, ['contact.expired'] = true,
}

local function count(ev)
  if COUNTED[ev.type] then
    local f = redis.call('HMGET', kc(ev.contact), 'ch', 'tier', 'pool')
    redis.call('HINCRBY', K_COUNTS, ev.type .. '|' .. (ev.pool or f[3] or '') .. '|' ..
               (f[1] or '') .. '|' .. (f[2] or ''), 1)
  elseif string.sub(ev.type, 1, 4) == 'sla.' then
    redis.call('HINCRBY', K_COUNTS, ev.type .. '|' .. (ev.policy or '') .. '|' ..
               (ev.clock or ''), 1)
  end
end

local function stat(pname, ...)
  if pname == nil or pname == '' then return end
  local key = TAG .. ':sl:' .. pname .. ':' .. math.floor(NOW / 60000)
  local args = { ... }
  for i = 1, #args, 2 do redis.call('HINCRBY', key, args[i], args[i + 1]) end
  redis.call('EXPIRE', key, STAT_TTL)
end

-- An answer: within the pool's service-level seconds or not, and its wait.
local function stat_answer(c, pname)
  local p = pool(pname)
  if not p then return end
  local wait = NOW - tonumber(c.enq)
  stat(pname, 'answered', 1, 'within', wait <= p.sl and 1 or 0, 'wait_ms', wait)
end

local function record(ev)
  ev.at = NOW
  ev.actor = ev.actor or ACTOR
  local json = cjson.encode(ev)
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', rt_num('events_maxlen', 1000000), '*', 'e', json)
  if ev.contact then redis.call('RPUSH', ktl(ev.contact), json) end
  count(ev)
end

-- One notification per agent per script call: a completion that also hands the
-- agent its next offer changes the agent twice, and every replica parses each
-- message, so a second one would only cost.
local function notify_agent(aid)
  if NOTIFIED[aid] then return end
  NOTIFIED[aid] = true
  redis.call('PUBLISH', NOTIFY, TAG .. '|a|' .. aid)
end

-- Agents --------------------------------------------------------------------

local function load_agent(aid)
  return hmap(ka(aid))
end

-- "pool=score,pool=score" -> list of {name, score}
local function agent_pools(a)
  local out = {}
  for _, part in ipairs(split(a.pools, ',')) do
    local eq = string.find(part, '=', 1, true)
    out[#out + 1] = { string.sub(part, 1, eq - 1), tonumber(string.sub(part, eq + 1)) }
  end
  return out
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
-- available and room for the channel's weight) and keeps the staffed sets.
local function refresh_agent(a)
  local free = tonumber(a.cap) - tonumber(a.load)
  local open = a.st == 'available'
  for _, ps in ipairs(agent_pools(a)) do
    local pname, skill = ps[1], ps[2]
    local p = pool(pname)
    if p then
      local score = strategy_score(a, p.strategy, skill)
      for _, ch in ipairs(p.channels) do
        local c = channel(ch)
        if open and c and c.w <= free then
          redis.call('ZADD', kr(pname, ch), score, a.id)
        else
          redis.call('ZREM', kr(pname, ch), a.id)
        end
      end
      if a.st == 'offline' then
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

local function release(a, cid)
  local w = tonumber(redis.call('HGET', ka(a.id), 'h:' .. cid) or '0')
  if w > 0 then
    redis.call('HDEL', ka(a.id), 'h:' .. cid)
    a.load = tostring(redis.call('HINCRBY', ka(a.id), 'load', -w))
  end
  return w
end

-- Contacts ------------------------------------------------------------------

local function load_contact(cid)
  return hmap(kc(cid))
end

-- stages = "after_ms:p1,p2|after_ms:p3" -> list of {after, {pools}}
local function stages_of(c)
  local out = {}
  for _, s in ipairs(split(c.stages, '|')) do
    local colon = string.find(s, ':', 1, true)
    out[#out + 1] = { tonumber(string.sub(s, 1, colon - 1)), split(string.sub(s, colon + 1), ',') }
  end
  return out
end

-- Pools of the stages reached so far, in stage order, without repeats.
local function reached_pools(c)
  local out, seen = {}, {}
  local st = stages_of(c)
  for i = 1, math.min(tonumber(c.stage), #st) do
    for _, p in ipairs(st[i][2]) do
      if not seen[p] then seen[p] = true; out[#out + 1] = p end
    end
  end
  return out
end

local function enqueue(c)
  local rank = tonumber(c.rank)
  if c.tgt and c.tgt ~= '' then
    redis.call('ZADD', kaq(c.tgt), rank, c.id)
    return
  end
  for _, p in ipairs(reached_pools(c)) do
    redis.call('ZADD', kq(p, c.ch), rank, c.id)
    redis.call('ZADD', kqa(p), c.enq, c.id)
  end
end

local function dequeue(c)
  if c.tgt and c.tgt ~= '' then redis.call('ZREM', kaq(c.tgt), c.id) end
  for _, p in ipairs(reached_pools(c)) do
    redis.call('ZREM', kq(p, c.ch), c.id)
    redis.call('ZREM', kqa(p), c.id)
  end
end

local function set_state(c, st)
  c.st = st
  redis.call('HSET', kc(c.id), 'st', st)
end

-- A timer due before the workspace's next one wakes the replicas' timer
-- workers (`<tag>|t`, router/store/notify.py): they sleep until the next due
-- time they know of, so an idle replica sends Redis nothing.
local function add_timer(due, member)
  if not NOTIFIED['|t'] then
    local head = redis.call('ZRANGE', K_TIMERS, 0, 0, 'WITHSCORES')
    if #head == 0 or tonumber(due) < tonumber(head[2]) then
      NOTIFIED['|t'] = true
      redis.call('PUBLISH', NOTIFY, TAG .. '|t')
    end
  end
  redis.call('ZADD', K_TIMERS, due, member)
end

-- SLA clocks ------------------------------------------------------------------
--
-- State of a contact's clocks lives in its own hash `<contact>:sla` (fields
-- `<clock>.<x>`): st (active|warned|breached|paused|met|missed|cancelled),
-- start, run (counting since), used (budget spent before `run`, ms), due
-- (breach), g (generation: bumped whenever the schedule is replaced), steps
-- (ladder indexes scheduled in this generation), f<i> (when step i fired).
-- Timer members are `sla|<contact>|<clock>|<step>|<generation>`; the ladder's
-- actions are read from the runtime hash when a step fires.

local RUNNING = { active = true, warned = true, breached = true }

local function sla_member(cid, clock, idx, g)
  return 'sla|' .. cid .. '|' .. clock .. '|' .. idx .. '|' .. g
end

-- Schedules steps "i.delta_ms,i.delta_ms" of one clock at generation g.
local function sla_schedule(cid, clock, steps, g)
  local idx = {}
  for _, st in ipairs(split(steps, ',')) do
    local dot = string.find(st, '.', 1, true)
    local i = string.sub(st, 1, dot - 1)
    add_timer(NOW + tonumber(string.sub(st, dot + 1)), sla_member(cid, clock, i, g))
    idx[#idx + 1] = i
  end
  return table.concat(idx, ',')
end

-- Starts the clocks of a plan "clock:breach_delta:fingerprint:steps|clock:...".
-- The fingerprint names the clock's definition (ladder and calendar): a config
-- change that alters it re-plans the clock (router/routing/engine.py).
local function sla_start(cid, policy, plan)
  if plan == nil or plan == '' then return end
  local fields = { 'policy', policy }
  for _, seg in ipairs(split(plan, '|')) do
    local p = split(seg, ':')
    local clock = p[1]
    local steps = sla_schedule(cid, clock, p[4] or '', 1)
    local f = { 'st', 'active', 'start', NOW, 'run', NOW, 'used', 0,
                'due', NOW + tonumber(p[2]), 'g', 1, 'steps', steps, 'fp', p[3] }
    for i = 1, #f, 2 do fields[#fields + 1] = clock .. '.' .. f[i]; fields[#fields + 1] = f[i + 1] end
  end
  redis.call('HSET', ksla(cid), unpack(fields))
  redis.call('SADD', K_SLA_RUN, cid)
end

-- Ends one running or paused clock: `met` (or `missed` once breached) when
-- its goal is reached, `cancelled` when the contact ended without it.
local function sla_stop(cid, clock, reached)
  local key = ksla(cid)
  local s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', clock .. '.steps',
                       'policy', clock .. '.due')
  if not (RUNNING[s[1]] or s[1] == 'paused') then return end
  for _, i in ipairs(split(s[3], ',')) do
    -- A step already due stays: the clock ran past it, so it is still recorded
    -- when its timer fires (late; see fire.lua). Only future steps are dropped.
    local m = sla_member(cid, clock, i, s[2])
    local due = redis.call('ZSCORE', K_TIMERS, m)
    if due == false or tonumber(due) > NOW then redis.call('ZREM', K_TIMERS, m) end
  end
  local result = 'cancelled'
  -- by the clock, not by whether the breach timer has fired yet (it may lag)
  if reached then
    result = (s[1] ~= 'breached' and NOW <= tonumber(s[5])) and 'met' or 'missed'
  end
  redis.call('HSET', key, clock .. '.st', result, clock .. '.end', NOW,
             clock .. '.g', tonumber(s[2]) + 1)
  record({ type = 'sla.' .. result, contact = cid, clock = clock, policy = s[4],
           due = tonumber(s[5]), margin_ms = tonumber(s[5]) - NOW, previous = s[1] })
  -- the running-clock index holds contacts with a clock still to re-plan
  local left = redis.call('HMGET', key, 'answer.st', 'first_response.st', 'resolve.st')
  for _, st in ipairs(left) do
    if RUNNING[st] or st == 'paused' then return end
  end
  redis.call('SREM', K_SLA_RUN, cid)
end

-- Splits "a;b;;c" keeping empty fields.
local function fields(s, sep)
  local out = {}
  for part in string.gmatch(s .. sep, '([^' .. sep .. ']*)' .. sep) do out[#out + 1] = part end
  return out
end

local function notify_targets(c, csv)
  local out = {}
  for _, t in ipairs(split(csv, ',')) do
    if t == 'team_supervisor' then
      local sup = c.agent and c.agent ~= '' and redis.call('HGET', ka(c.agent), 'sup') or nil
      out[#out + 1] = (sup and sup ~= '') and ('person:' .. sup) or t
    else
      out[#out + 1] = t
    end
  end
  return out
end

-- Follow-ups are created by the router (rules and SLA live in Python): each
-- is a timer due now, kept until a replica has created the contact.
local function followup_timers(cid, source, specs)
  local n = 0
  for k, spec in ipairs(split(specs, '+')) do
    add_timer(NOW, 'followup|' .. cid .. '|' .. source .. '.' .. k .. '/' .. spec)
    n = n + 1
  end
  return n
end

local function sla_stop_all(c, reached)
  if c.sla == nil or c.sla == '' then return end
  for _, clock in ipairs({ 'answer', 'first_response', 'resolve' }) do
    sla_stop(c.id, clock, reached)
  end
end

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
  redis.call('HSET', ka(a.id), 'h:' .. c.id, w, 'idle', NOW)
  a.load = tostring(redis.call('HINCRBY', ka(a.id), 'load', w))
  a.idle = tostring(NOW)
  refresh_agent(a)
  dequeue(c)
  local og = redis.call('HINCRBY', kc(c.id), 'og', 1)
  local chn = channel(c.ch)
  local ev = { type = 'contact.offered', contact = c.id, agent = a.id, pool = pname,
               w = w, load = tonumber(a.load), cap = tonumber(a.cap), explain = explain }
  if chn and chn.auto then
    redis.call('HSET', kc(c.id), 'st', 'assigned', 'agent', a.id, 'pool', pname, 'ans', NOW)
    stat_answer(c, pname)
    c.st = 'assigned'
    ev.type = 'contact.assigned'
    ev.auto = true
    redis.call('SET', kla(c.cust), a.id, 'PX', math.max(rt_num('cont_window_ms', 0), 1))
    if c.sla and c.sla ~= '' then sla_stop(c.id, 'answer', true) end
  else
    local to = chn and chn.to or 20000
    redis.call('HSET', kc(c.id), 'st', 'offered', 'agent', a.id, 'pool', pname, 'oexp', NOW + to)
    c.st = 'offered'
    add_timer(NOW + to, 'offer|' .. c.id .. '|' .. og)
  end
  c.agent = a.id
  ev.state = c.st
  record(ev)
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
      local cands = redis.call('ZRANGE', kr(pname, c.ch), 0, SCAN_LIMIT - 1, 'WITHSCORES')
      -- a ready preferred agent wins regardless of its place in the strategy order
      if c.pref and c.pref ~= '' and tonumber(c.prefu or '0') > NOW then
        local sc = redis.call('ZSCORE', kr(pname, c.ch), c.pref)
        if sc and not avoided(c, c.pref) and meets_required(c.pref, c.req) then
          return c.pref, pname, { pool = pname, strategy = p.strategy, winner = c.pref,
            why = 'preferred agent (served this customer recently)', rank = rank_parts(c),
            candidates = { { agent = c.pref, score = tonumber(sc) } } }
        end
      end
      for i = 1, #cands, 2 do
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

-- The best-ranked waiting contact agent a can take now, across its pools
-- (queues of channels whose weight fits its free capacity) and its own queue.
local function best_waiting(a)
  local free = tonumber(a.cap) - tonumber(a.load)
  local best_id, best_rank, best_pool = nil, nil, nil
  local function scan(key, pname)
    local items = redis.call('ZRANGE', key, 0, SCAN_LIMIT - 1, 'WITHSCORES')
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
  for _, ps in ipairs(agent_pools(a)) do
    local p = pool(ps[1])
    if p then
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

-- Ends a contact: timers are left to find it terminal; data expires later.
local function finish(c, st)
  set_state(c, st)
  redis.call('HSET', kc(c.id), 'done', NOW)
  -- the customer left (or waited too long): no clock can be met any more; a
  -- completed case keeps its resolve clock until the gateway resolves it
  if st ~= 'completed' then sla_stop_all(c, false) end
  -- retention.contacts of the config (router/routing/config.py), 30 days by default
  local ttl = rt_num('retention_s', 2592000)
  redis.call('EXPIRE', kc(c.id), ttl)
  redis.call('EXPIRE', ktl(c.id), ttl)
  redis.call('EXPIRE', ksla(c.id), ttl)
end

local function contact_reply(c)
  return redis.call('HGETALL', kc(c.id))
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
  c.agent = ''
  local missed = 0
  if timeout then
    missed = redis.call('HINCRBY', ka(a.id), 'missed', 1)
  else
    redis.call('HSET', ka(a.id), 'missed', 0)
  end
  record({ type = timeout and 'contact.offer_timeout' or 'contact.rejected', contact = c.id,
           agent = a.id, state = 'queued', released = w, load = tonumber(a.load),
           cap = tonumber(a.cap), reason = reason })
  if timeout and missed >= rt_num('missed_after', 3) and a.st == 'available' then
    a.st = 'missed'
    redis.call('HSET', ka(a.id), 'st', 'missed', 'reason', 'missed offers')
    record({ type = 'agent.state_changed', agent = a.id, state = 'missed', previous = 'available',
             reason = missed .. ' consecutive offer timeouts' })
  end
  refresh_agent(a)
  if not try_match(c) then enqueue(c) end
  agent_pull(a)
  notify_agent(a.id)
end

-- Releases whatever agent holds c (if any) and lets it take the next contact.
local function release_holder(c)
  if c.agent == nil or c.agent == '' then return 0, nil end
  local a = load_agent(c.agent)
  if a == nil then return 0, nil end
  local w = release(a, c.id)
  if w > 0 then
    -- idle time (longest_idle, ties) counts from the end of the agent's last contact
    a.idle = tostring(NOW)
    redis.call('HSET', ka(a.id), 'idle', NOW)
  end
  refresh_agent(a)
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
           state = 'completed', released = w, load = a and tonumber(a.load) or nil })
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

-- Starts a function call: its keys and arguments, the time, fresh caches.
local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  RT_KEY = keys[1]
  TAG = string.sub(RT_KEY, 1, -4)
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  ACTOR = 'system'
  K_EVENTS = TAG .. ':events'
  K_TIMERS = TAG .. ':timers'
  K_SLA_RUN = TAG .. ':sla:run'
  K_COUNTS = TAG .. ':stats:counts'
  RT, CHANNELS, POOLS, NOTIFIED = {}, {}, {}, {}
end
