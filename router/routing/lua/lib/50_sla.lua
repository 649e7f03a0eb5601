-- SLA clocks ------------------------------------------------------------------
--
-- State of a contact's clocks lives in its record (ksla = kc; fields
-- `<clock>.<x>`, the policy being the record's `sla`): st (active|warned|breached|paused|met|missed|cancelled),
-- start, run (counting since), used (budget spent before `run`, ms), due
-- (breach), g (generation: bumped whenever the schedule is replaced), steps
-- (ladder indexes scheduled in this generation), f<i> (when step i fired).
-- Timer members are `sla|<contact>|<clock>|<step>|<generation>`; the ladder's
-- actions are read from the runtime hash when a step fires.

local RUNNING = { active = true, warned = true, breached = true }
local CLOCKS = { 'answer', 'first_response', 'resolve' }
-- per clock, the state fields of the other two (any other name: all three);
-- written out: the library's top level runs without the base functions
local ALL_STATES = { 'answer.st', 'first_response.st', 'resolve.st' }
local OTHER_STATES = { answer = { 'first_response.st', 'resolve.st' },
                       first_response = { 'answer.st', 'resolve.st' },
                       resolve = { 'answer.st', 'first_response.st' } }

local function sla_member(cid, clock, idx, g)
  return 'sla|' .. cid .. '|' .. clock .. '|' .. idx .. '|' .. g
end

-- Parsed SLA plans and ladders, by their text (shared: read only). Apart from
-- PARSED: a clock on a business calendar gets deltas of its own at every start,
-- which would crowd the routing strings out; these are the same for every
-- contact of a policy without one.
local PLANS, PLANS_N = {}, 0
local function keep_plan(key, value)
  if PLANS_N >= 512 then PLANS, PLANS_N = {}, 0 end
  PLANS_N = PLANS_N + 1
  PLANS[key] = value
  return value
end

-- "i.delta_ms,i.delta_ms" -> {indexes "i,i", {i, delta_ms}...} (shared: read only)
local function sla_steps(steps)
  local key = 'l' .. steps
  local out = PLANS[key]
  if out then return out end
  local idx = {}
  out = { '' }
  for _, st in ipairs(split(steps, ',')) do
    local dot = string.find(st, '.', 1, true)
    local i = string.sub(st, 1, dot - 1)
    out[#out + 1] = { i, tonumber(string.sub(st, dot + 1)) }
    idx[#idx + 1] = i
  end
  out[1] = table.concat(idx, ',')
  return keep_plan(key, out)
end

-- Schedules steps "i.delta_ms,i.delta_ms" of one clock at generation g.
local function sla_schedule(cid, clock, steps, g)
  local parsed_steps = sla_steps(steps)
  for k = 2, #parsed_steps do
    local step = parsed_steps[k]
    add_timer(NOW + step[2], sla_member(cid, clock, step[1], g))
  end
  return parsed_steps[1]
end

-- Starts the clocks of a plan "clock:breach_delta:fingerprint:steps|clock:...":
-- schedules their timers and returns the clocks' fields, which the caller
-- writes with the contact's own (create.lua: one HSET for both).
-- The fingerprint names the clock's definition (ladder and calendar): a config
-- change that alters it re-plans the clock (router/routing/engine.py).
local function sla_start(cid, plan, fields)
  if plan == nil or plan == '' then return end
  -- the policy's name is the record's `sla` field
  local key = 'p' .. plan
  local segs = PLANS[key] or keep_plan(key, split(plan, '|'))
  for _, seg in ipairs(segs) do
    local p = PLANS['c' .. seg] or keep_plan('c' .. seg, split(seg, ':'))
    local clock = p[1]
    local steps = sla_schedule(cid, clock, p[4] or '', 1)
    local f = { 'st', 'active', 'start', NOWS, 'run', NOWS, 'used', '0',
                'due', string.format('%d', NOW + tonumber(p[2])), 'g', '1', 'steps', steps,
                'fp', p[3] }
    for i = 1, #f, 2 do fields[#fields + 1] = clock .. '.' .. f[i]; fields[#fields + 1] = f[i + 1] end
  end
  redis.call('SADD', K_SLA_RUN, cid)
end

-- Ends one running or paused clock: `met` (or `missed` once breached) when
-- its goal is reached, `cancelled` when the contact ended without it.
-- `c`: the contact's whole record as this call read it, when no clock field
-- has been written since (its fields then stand for the read). `flat`: the
-- caller's pending HSET of the record (field, value, ...), to which the
-- clock's fields are added instead of a write of their own.
local function sla_stop(cid, clock, reached, c, flat)
  local key = ksla(cid)
  -- with the other clocks' states: whether one is left running (the end) needs no second read
  local others = OTHER_STATES[clock] or ALL_STATES
  local s
  if c then
    s = { c[clock .. '.st'] or false, c[clock .. '.g'] or false, c[clock .. '.steps'] or false,
          c.sla or false, c[clock .. '.due'] or false }
    for i = 1, #others do s[5 + i] = c[others[i]] or false end
  else
    s = redis.call('HMGET', key, clock .. '.st', clock .. '.g', clock .. '.steps',
                   'sla', clock .. '.due', unpack(others))
  end
  if not (RUNNING[s[1]] or s[1] == 'paused') then return end
  -- A step already due stays: the clock ran past it, so it is still recorded
  -- when its timer fires (late; see fire.lua). Only future steps are dropped,
  -- all of them read in one call and removed in another.
  local members = {}
  for _, i in ipairs(split(s[3], ',')) do members[#members + 1] = sla_member(cid, clock, i, s[2]) end
  if #members > 0 then
    local dues = redis.call('ZMSCORE', K_TIMERS, unpack(members))
    local future = {}
    for j, m in ipairs(members) do
      if dues[j] == false or tonumber(dues[j]) > NOW then future[#future + 1] = m end
    end
    if #future > 0 then redis.call('ZREM', K_TIMERS, unpack(future)) end
  end
  local result = 'cancelled'
  -- by the clock, not by whether the breach timer has fired yet (it may lag)
  if reached then
    result = (s[1] ~= 'breached' and NOW <= tonumber(s[5])) and 'met' or 'missed'
  end
  local writes = { clock .. '.st', result, clock .. '.end', NOWS,
                   clock .. '.g', string.format('%d', tonumber(s[2]) + 1) }
  if flat then
    for i = 1, #writes do flat[#flat + 1] = writes[i] end
  else
    redis.call('HSET', key, unpack(writes))
  end
  record({ type = 'sla.' .. result, contact = cid, clock = clock, policy = s[4],
           due = tonumber(s[5]), margin_ms = tonumber(s[5]) - NOW, previous = s[1] })
  -- the running-clock index holds contacts with a clock still to re-plan: the
  -- others as read above (this call changed only this one)
  for i = 6, #s do
    if RUNNING[s[i]] or s[i] == 'paused' then return end
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
  for _, clock in ipairs(CLOCKS) do
    sla_stop(c.id, clock, reached)
  end
end
