-- Callbacks -------------------------------------------------------------------
--
-- A callback is the same contact record, rank and SLA clocks, to be served as
-- an outbound call on the workspace's callback channel (README "Callbacks").
-- Record fields: cb (1), cba (attempts made), cbm (max attempts), cbg (retry
-- gap, ms), cbnb / cbna (the window, ms, when asked for), cbn (when it comes
-- back while `scheduled`), cbr (1 once an attempt was answered). The number to
-- call is personal data: it lives in `pii` (key `c`) and in no event.
-- While `scheduled` (before its window, or between attempts) it is in no queue
-- and a `cbdue|<contact>|<attempts made>` timer brings it back; the channel's
-- max_wait never expires a callback: the caller is not holding a line.

-- Callback counters: the event counts (exported as router_contact_events,
-- event "callback_<what>") and today's per pool (wallboard).
local function cb_count(c, what)
  local where = (c.pool and c.pool ~= '') and c.pool or (reached_pools(c)[1] or '')
  redis.call('HINCRBY', K_COUNTS, 'contact.callback_' .. what .. '|' .. where .. '|' ..
             c.ch .. '|' .. (c.tier or ''), 1)
  local day = TAG .. ':stats:day:' .. math.floor(NOW / 86400000)
  redis.call('HINCRBY', day, 'callback_' .. what .. '|' .. where, 1)
  redis.call('EXPIRE', day, 3 * 86400)
end

-- Out of every queue until `at`: the window opens or the retry gap is over.
local function cb_hold(c, at, attempts)
  dequeue(c)
  c.st = 'scheduled'
  STATES[c.id] = 'scheduled'
  c.agent = ''
  c.cbn = tostring(at)
  redis.call('HSET', kc(c.id), 'st', 'scheduled', 'agent', '', 'oexp', '', 'cbn', at)
  add_timer(at, 'cbdue|' .. c.id .. '|' .. attempts)
end

-- The SLA clocks of a callback asked for a later window start when it opens:
-- clocks still active (no step fired) move their start, due time and steps by
-- the same wall-clock span (business calendars are not re-counted).
local function cb_shift_clocks(cid, start)
  for _, clock in ipairs({ 'answer', 'first_response', 'resolve' }) do
    local s = redis.call('HMGET', ksla(cid), clock .. '.st', clock .. '.start', clock .. '.due',
                         clock .. '.g', clock .. '.steps')
    local delta = s[1] == 'active' and (start - tonumber(s[2])) or 0
    if delta > 0 then
      redis.call('HSET', ksla(cid), clock .. '.start', start, clock .. '.run', start,
                 clock .. '.due', tonumber(s[3]) + delta)
      for _, i in ipairs(split(s[5], ',')) do
        local m = sla_member(cid, clock, i, s[4])
        local due = redis.call('ZSCORE', K_TIMERS, m)
        if due then add_timer(tonumber(due) + delta, m) end
      end
    end
  end
end

-- Makes contact c (its cb* fields set; `pch` the channel it waited on, when
-- another) a callback: queued with its rank as
-- it was, or, for a window that opens later, held until then and ranked as
-- if it arrived when the window opens (its priority offset kept).
local function cb_start(c)
  local nb = tonumber(c.cbnb or '')
  local later = nb ~= nil and nb > NOW
  local before = tonumber(c.rank)
  if later then
    c.enq = tostring(nb)
    c.rank = tostring(nb - tonumber(c.off))
    redis.call('HSET', kc(c.id), 'enq', c.enq, 'rank', c.rank)
    cb_shift_clocks(c.id, nb)
  end
  cb_count(c, 'requested')
  record({ type = 'contact.callback_requested', contact = c.id, channel = c.ch,
           state = later and 'scheduled' or 'queued', max_attempts = tonumber(c.cbm),
           retry_gap_ms = tonumber(c.cbg), not_before = nb, not_after = tonumber(c.cbna or ''),
           previous_channel = c.pch, previous_rank = before ~= tonumber(c.rank) and before or nil,
           explain = { rank = rank_parts(c) } })
  if c.cbna and c.cbna ~= '' then add_timer(tonumber(c.cbna), 'cbmiss|' .. c.id .. '|0') end
  if later then
    cb_hold(c, nb, '0')
  elseif not try_match(c) then
    enqueue(c)
    schedule_next_stage(c)
  end
end

-- Timer `cbdue`: the window opened or the retry gap is over; back in its
-- queues with the rank it had.
local function cb_due(c, attempts)
  if c.st ~= 'scheduled' or (c.cba or '0') ~= attempts then return false end
  c.st = 'queued'
  STATES[c.id] = 'queued'
  c.cbn = nil
  local reasons = advance_stages(c)
  redis.call('HSET', kc(c.id), 'st', 'queued', 'stage', c.stage)
  redis.call('HDEL', kc(c.id), 'cbn')
  record({ type = 'contact.callback_due', contact = c.id, state = 'queued',
           attempt = tonumber(attempts) + 1, explain = { rank = rank_parts(c),
           stage_reasons = reasons } })
  if not try_match(c) then
    enqueue(c)
    schedule_next_stage(c)
  end
  return true
end

-- Timer `cbmiss`: the window closed before the customer was reached. The
-- callback goes on waiting; its answer clock's ladder up to the breach fires
-- now (steps due later than the breach keep their times).
local function cb_missed(c)
  if c.cbr == '1' or not (c.st == 'queued' or c.st == 'scheduled' or c.st == 'offered') then
    return false
  end
  local s = redis.call('HMGET', ksla(c.id), 'answer.st', 'answer.g', 'answer.steps', 'answer.due')
  local pulled = 0
  if s[1] == 'active' or s[1] == 'warned' then
    for _, i in ipairs(split(s[3], ',')) do
      local m = sla_member(c.id, 'answer', i, s[2])
      local due = redis.call('ZSCORE', K_TIMERS, m)
      if due and tonumber(due) > NOW and tonumber(due) <= tonumber(s[4]) then
        add_timer(NOW, m)
        pulled = pulled + 1
      end
    end
  end
  cb_count(c, 'window_missed')
  record({ type = 'contact.callback_window_missed', contact = c.id, state = c.st,
           attempts = tonumber(c.cba or '0'), not_after = tonumber(c.cbna),
           sla_steps_now = pulled })
  return true
end
