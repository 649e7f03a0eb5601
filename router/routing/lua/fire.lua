-- Applies claimed timers and acknowledges each in the same script, so an
-- effect and its ack cannot part. Every effect first checks that the contact
-- is still in the state the timer was set for: a re-fired or stale timer is a
-- no-op. Several timers per call share the library prelude and a round trip.
-- KEYS: [1] runtime hash, [2] leased timers zset, [3] lease info hash
-- ARGV: member, due ms, member, due ms, ... where a member is "kind|contact|arg"
--       (SLA: "sla|contact|clock|step|generation"; callbacks: "cbdue|contact|attempts
--       made" back in the queues, "cbmiss|contact|0" the window closed)
-- Returns one code per timer: 1 applied, 0 stale or gone.
ACTOR = 'system:timer'

-- SLA step effects (actions from the runtime hash, see sla/policy.py actions_text:
-- "kind|boost_ms;expand pools;reassign;notify targets;followups").
local function sla_boost(c, ms)
  if c.st ~= 'queued' and c.st ~= 'offered' then return nil end
  c.off = tostring(tonumber(c.off) + ms)
  c.rank = tostring(tonumber(c.rank) - ms)
  redis.call('HSET', kc(c.id), 'off', c.off, 'rank', c.rank)
  if c.st == 'queued' then enqueue(c) end
  return tonumber(c.rank)
end

local function sla_expand(c, pools)
  if c.st ~= 'queued' or (c.tgt and c.tgt ~= '') then return nil end
  c.stages = c.stages .. '|' .. (NOW - tonumber(c.enq)) .. ':' .. pools
  c.stage = tostring(#stages_of(c))
  redis.call('HSET', kc(c.id), 'stages', c.stages, 'stage', c.stage)
  if not try_match(c) then enqueue(c) end
  return c.st
end

-- Outcomes of a stopped clock (lib/50_sla.lua sla_stop), which bumps the generation once.
local STOPPED = { met = true, missed = true, cancelled = true }

local function sla_fire(c, clock, idx, g, due)
  local key = ksla(c.id)
  local s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', 'sla', clock .. '.due',
                       clock .. '.f' .. idx, clock .. '.end')
  if s[5] then return { 0, 'stale' } end  -- the step already fired
  -- A step that came due before its clock stopped (the answer or the end came
  -- while its timer lagged or its replica died holding the lease) is recorded
  -- all the same, late; the clock keeps its outcome.
  local after_stop = STOPPED[s[1]] and tonumber(s[2]) == tonumber(g) + 1
    and s[6] ~= false and due <= tonumber(s[6])
  -- otherwise: a stale generation or a clock no longer running
  if not after_stop and (s[2] ~= g or not RUNNING[s[1]]) then return { 0, 'stale' } end
  local def = rt('sla:' .. s[3] .. ':' .. clock .. ':' .. idx)
  if not def then return { 0, 'stale' } end
  local bar = string.find(def, '|', 1, true)
  local step_kind = string.sub(def, 1, bar - 1)
  local a = fields(string.sub(def, bar + 1), ';')
  if after_stop then
    redis.call('HSET', key, clock .. '.f' .. idx, NOW)
  else
    local st = s[1]
    if step_kind == 'breach' then st = 'breached' elseif st == 'active' then st = 'warned' end
    redis.call('HSET', key, clock .. '.st', st, clock .. '.f' .. idx, NOW)
  end
  if step_kind == 'breach' then  -- breaches today, per pool (wallboard); UTC days
    local day = TAG .. ':stats:day:' .. math.floor(NOW / 86400000)
    local where = (c.pool and c.pool ~= '') and c.pool or (reached_pools(c)[1] or '')
    redis.call('HINCRBY', day, 'breached|' .. where, 1)
    redis.call('EXPIRE', day, 3 * 86400)
  end
  local ev = { type = step_kind == 'warning' and 'sla.warning' or
                 (step_kind == 'breach' and 'sla.breached' or 'sla.escalated'),
               contact = c.id, clock = clock, step = tonumber(idx), policy = s[3],
               due = tonumber(s[4]), state = c.st, agent = c.agent ~= '' and c.agent or nil,
               late_ms = NOW - due, after_stop = after_stop or nil }
  -- boost, expand and reassign act on the wait this clock measured: not once it stopped
  local boost = after_stop and 0 or (tonumber(a[1]) or 0)
  if boost > 0 then ev.boost_ms = boost; ev.rank = sla_boost(c, boost) end
  if not after_stop and a[2] and a[2] ~= '' then
    ev.expand = split(a[2], ','); ev.expanded = sla_expand(c, a[2])
  end
  if not after_stop and a[3] == '1' then
    ev.reassign = true
    if c.st == 'offered' then
      ev.reassigned_from = c.agent
      requeue_offer(c, load_agent(c.agent), false, 'SLA escalation: reassigned')
    end
  end
  if a[4] and a[4] ~= '' then ev.notify = notify_targets(c, a[4]) end
  if a[5] and a[5] ~= '' then
    ev.followups = followup_timers(c.id, clock .. '.' .. idx, a[5])
  end
  record(ev)
  return { 1, ev.type }
end

local function fire_one(member, due)
  redis.call('ZREM', KEYS[2], member)
  redis.call('HDEL', KEYS[3], member)
  local parts = split(member, '|')
  local kind, cid, arg = parts[1], parts[2], parts[3]
  local c = load_contact(cid)
  if c == nil then return { 0, 'gone' } end
  if kind == 'sla' then return sla_fire(c, parts[3], parts[4], parts[5], due) end
  if kind == 'offer' then
    if c.st ~= 'offered' or c.og ~= arg then return { 0, 'stale' } end
    requeue_offer(c, load_agent(c.agent), true, 'offer timed out')
  elseif kind == 'wrap' then
    if c.st ~= 'wrap_up' or c.og ~= arg then return { 0, 'stale' } end
    complete_now(c)
  elseif kind == 'stage' then
    if c.st ~= 'queued' or tonumber(c.stage) >= tonumber(arg) or (c.tgt and c.tgt ~= '') then
      return { 0, 'stale' }
    end
    dequeue(c)
    local reasons = advance_stages(c)
    redis.call('HSET', kc(cid), 'stage', c.stage)
    record({ type = 'contact.stage_reached', contact = cid, state = 'queued',
             stage = tonumber(c.stage), explain = { stage_reasons = reasons } })
    if not try_match(c) then
      enqueue(c)
      schedule_next_stage(c)
    end
  elseif kind == 'expire' then
    -- a callback's caller is not holding the line: max_wait does not apply
    if c.st ~= 'queued' or c.cb then return { 0, 'stale' } end
    dequeue(c)
    -- unanswered, for the service level and the patience estimate
    stat(reached_pools(c)[1], 'abandoned', 1, 'abandon_wait_ms', NOW - tonumber(c.enq))
    finish(c, 'expired')
    record({ type = 'contact.expired', contact = cid, state = 'expired',
             wait_ms = NOW - tonumber(c.enq), reason = 'waited longer than the channel allows' })
  elseif kind == 'cbdue' then  -- lib/85_callbacks.lua
    if not cb_due(c, arg) then return { 0, 'stale' } end
  elseif kind == 'cbmiss' then
    if not cb_missed(c) then return { 0, 'stale' } end
  elseif kind == 'pref' then
    if c.st ~= 'queued' then return { 0, 'stale' } end
    -- the preference ran out: anyone eligible may take it now
    if try_match(c) then return { 1, kind } end
  else
    return { 0, 'unknown' }
  end
  return { 1, kind }
end

local out = {}
for i = 1, #ARGV, 2 do
  out[#out + 1] = fire_one(ARGV[i], tonumber(ARGV[i + 1]) or NOW)[1]
end
return out
