-- Changes a waiting or served contact (PATCH): the routing fields the router
-- planned from the rules, the rank they give from its arrival, the stages its
-- age has reached, its queues and stage timer, and its SLA clocks when another
-- policy applies. An offered or assigned contact keeps its agent; a later
-- re-queue (reject, timeout, transfer) uses the new rank and pools.
-- Refused (-4) when what the router planned from changed since it read it
-- (a timer's boost or expansion, a transfer, another update, a clock that
-- moved): the router reads again and re-plans.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] Redis TIME (ms) the clocks were planned at,
--       [3] guard JSON {field: value read, '' when absent},
--       [4] fields JSON {field: new value, '' removes it},
--       [5] clock changes JSON [{clock, op = replan|start|cancel, start, used, due, steps, fp}]
--           ("steps": "i.delta_ms,..." from ARGV[2]; "due": absolute ms),
--       [6] event parts JSON {before, after, attributes_changed}
-- Returns {1, contact} | {-1, 'not_found'} | {-2, state, why} | {-4, field}.
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st == 'completed' or c.st == 'abandoned' or c.st == 'expired' then
  return { -2, c.st, 'the contact has ended' }
end
for f, v in pairs(cjson.decode(ARGV[3])) do
  if (c[f] or '') ~= v then return { -4, f } end
end
local T = tonumber(ARGV[2])
local set = cjson.decode(ARGV[4])
local ops = cjson.decode(ARGV[5])
local ev = cjson.decode(ARGV[6])

local queued = c.st == 'queued'
if queued then dequeue(c) end  -- from the pools of its old stages
-- the old stages' timers go: the new stages get theirs below
for i = 2, #stages_of(c) do redis.call('ZREM', K_TIMERS, 'stage|' .. c.id .. '|' .. i) end
local old_rank, old_stage = tonumber(c.rank), tonumber(c.stage)

local sets, dels = {}, {}
for f, v in pairs(set) do
  if v == '' then
    dels[#dels + 1] = f
    c[f] = nil
  else
    sets[#sets + 1] = f
    sets[#sets + 1] = v
    c[f] = v
  end
end
-- the same formula as create: it keeps its age, only its offset changed
c.rank = tostring(tonumber(c.enq) - tonumber(c.off))
local reasons = {}
if set.stages then
  -- the new stages, reached as its age (or the overflow rule) allows
  c.stage = '1'
  reasons = advance_stages(c)
end

ev.type = 'contact.updated'
ev.contact = c.id
ev.state = c.st
ev.agent = (c.agent and c.agent ~= '') and c.agent or nil
if tonumber(c.rank) ~= old_rank then ev.before.rank = old_rank; ev.after.rank = tonumber(c.rank) end
if tonumber(c.stage) ~= old_stage or set.stages then
  ev.before.stages_reached = old_stage
  ev.after.stages_reached = tonumber(c.stage)
  if #reasons > 0 then ev.explain = { stage_reasons = reasons } end
end
record(ev)

-- clocks the new policy lacks end first: their events name the policy they ran under
for _, op in ipairs(ops) do
  if op.op == 'cancel' then sla_stop(c.id, op.clock, false) end
end
sets[#sets + 1] = 'rank'; sets[#sets + 1] = c.rank
sets[#sets + 1] = 'stage'; sets[#sets + 1] = c.stage
redis.call('HSET', KEYS[2], unpack(sets))
if #dels > 0 then redis.call('HDEL', KEYS[2], unpack(dels)) end
redis.call('HINCRBY', KEYS[2], 'uv', 1)

-- running clocks under the new policy, with the budget they used
local key = ksla(c.id)
for _, op in ipairs(ops) do
  local clock = op.clock
  if op.op ~= 'cancel' then
    local g = 1
    if op.op == 'replan' then
      local s = redis.call('HMGET', key, clock .. '.g', clock .. '.steps')
      for _, i in ipairs(split(s[2], ',')) do
        redis.call('ZREM', K_TIMERS, sla_member(c.id, clock, i, s[1]))
      end
      g = tonumber(s[1]) + 1
    end
    local idx = {}
    for _, st in ipairs(split(op.steps, ',')) do
      local dot = string.find(st, '.', 1, true)
      local i = string.sub(st, 1, dot - 1)
      -- a mark of the old ladder's step i would make the new step i look fired
      redis.call('HDEL', key, clock .. '.f' .. i)
      add_timer(T + tonumber(string.sub(st, dot + 1)), sla_member(c.id, clock, i, g))
      idx[#idx + 1] = i
    end
    redis.call('HSET', key, clock .. '.g', g, clock .. '.run', T, clock .. '.used', op.used,
               clock .. '.steps', table.concat(idx, ','), clock .. '.fp', op.fp,
               clock .. '.due', op.due)
    if op.op == 'start' then
      redis.call('HSET', key, clock .. '.st', 'active', clock .. '.start', op.start)
    end
    redis.call('SADD', K_SLA_RUN, c.id)
    record({ type = 'sla.replanned', contact = c.id, clock = clock, policy = c.sla,
             used_ms = op.used, due = op.due, started = op.op == 'start' or nil })
  end
end

if queued then
  -- a ready agent of the new pools takes it now, else it waits there
  if not try_match(c) then
    enqueue(c)
    schedule_next_stage(c)
  end
else
  if c.st == 'offered' then schedule_next_stage(c) end
  -- the desktop holding it shows the new tier and intent
  if c.agent and c.agent ~= '' then notify_agent(c.agent) end
end
return { 1, contact_reply(c) }
