-- Events --------------------------------------------------------------------

-- Appends an event to the workspace stream and, for contacts, to its timeline
-- unless the workspace is archived (`arch` in the runtime hash, set by the
-- archiver, router/archive/events.py): the archive then has every event of a
-- contact, and the timeline is read from there.
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

local HANDLED = { ['contact.offered'] = true, ['contact.assigned'] = true }

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
  if ev.contact then
    if rt('arch') ~= '1' then
      redis.call('RPUSH', ktl(ev.contact), json)
    elseif ev.agent and HANDLED[ev.type] then
      -- who held the contact, for access checks (router/security/access.py),
      -- which the timeline told before
      local hd = redis.call('HGET', kc(ev.contact), 'hd') or ''
      if not string.find(',' .. hd .. ',', ',' .. ev.agent .. ',', 1, true) then
        redis.call('HSET', kc(ev.contact), 'hd', hd == '' and ev.agent or (hd .. ',' .. ev.agent))
      end
    end
  end
  count(ev)
end

-- One notification per agent per script call: a completion that also hands the
-- agent its next offer changes the agent twice, and every replica parses each
-- message, so a second one would only cost.
local function notify_agent(aid)
  if NOTIFIED[aid] then return end
  NOTIFIED[aid] = true
  redis.call('SPUBLISH', TAG .. ':notify', TAG .. '|a|' .. aid)
end
