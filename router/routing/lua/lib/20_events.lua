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

-- `c`: the contact's fields when the caller holds them as stored (its
-- channel, tier and pool), which spares reading them back; else they are read.
local function count(ev, c)
  if COUNTED[ev.type] then
    local ch, tier, cpool
    if c then
      ch, tier, cpool = c.ch, c.tier, c.pool
    else
      local f = redis.call('HMGET', kc(ev.contact), 'ch', 'tier', 'pool')
      ch, tier, cpool = f[1], f[2], f[3]
    end
    redis.call('HINCRBY', K_COUNTS, ev.type .. '|' .. (ev.pool or cpool or '') .. '|' ..
               (ch or '') .. '|' .. (tier or ''), '1')
  elseif string.sub(ev.type, 1, 4) == 'sla.' then
    redis.call('HINCRBY', K_COUNTS, ev.type .. '|' .. (ev.policy or '') .. '|' ..
               (ev.clock or ''), '1')
  end
end

-- A bucket key (per minute, per day) expires a fixed time after its bucket
-- ends: `ttl` seconds after `bucket_end_s`. That is never sooner than an
-- expiry renewed on every write (every write falls inside the bucket), so it
-- is set once, when the key is new. A key is new when a counter's HINCRBY
-- returns exactly its (non-zero) increment: the first write of a key creates
-- every field it touches, and a zero increment is never written (readers
-- default a missing field to 0), so a key's first write always sets it;
-- later writes that happen to create a field set it again, harmlessly.
local function bucket_expiry(key, fresh, bucket_end_s, ttl)
  if fresh then redis.call('EXPIREAT', key, bucket_end_s + ttl) end
end

local function stat(pname, ...)
  if pname == nil or pname == '' then return end
  if MINUTES == nil then MINUTES = string.format('%d', math.floor(NOW / 60000)) end
  local key = TAG .. ':sl:' .. pname .. ':' .. MINUTES
  local args = { ... }
  local fresh = false
  for i = 1, #args, 2 do
    local by = args[i + 1]  -- whole numbers: counts and ms
    if by ~= 0 and redis.call('HINCRBY', key, args[i], string.format('%d', by)) == by then
      fresh = true
    end
  end
  bucket_expiry(key, fresh, (tonumber(MINUTES) + 1) * 60, STAT_TTL)
end

-- An answer: within the pool's service-level seconds or not, and its wait.
local function stat_answer(c, pname)
  local p = pool(pname)
  if not p then return end
  local wait = NOW - tonumber(c.enq)
  stat(pname, 'answered', 1, 'within', wait <= p.sl and 1 or 0, 'wait_ms', wait)
end

-- The holders list `hd` with agent `aid` added; nil when it is listed already.
local function holders_with(hd, aid)
  if string.find(',' .. hd .. ',', ',' .. aid .. ',', 1, true) then return nil end
  return hd == '' and aid or (hd .. ',' .. aid)
end

-- `c`: see count (its `hd` too, kept up to date here).
local function record(ev, c)
  ev.at = NOW
  ev.actor = ev.actor or ACTOR
  local json = cjson.encode(ev)
  redis.call('XADD', K_EVENTS, 'MAXLEN', '~', rt('events_maxlen') or '1000000', '*', 'e', json)
  if ev.contact then
    if rt('arch') ~= '1' then
      redis.call('RPUSH', ktl(ev.contact), json)
    elseif ev.agent and HANDLED[ev.type] then
      -- who held the contact, for access checks (router/security/access.py),
      -- which the timeline told before
      local hd
      if c then hd = c.hd or '' else hd = redis.call('HGET', kc(ev.contact), 'hd') or '' end
      hd = holders_with(hd, ev.agent)
      if hd then
        redis.call('HSET', kc(ev.contact), 'hd', hd)
        if c then c.hd = hd end
      end
    end
  end
  count(ev, c)
end

-- One notification per agent per script call, sent when the call ends
-- (finish_call, 90_begin): a completion that also hands the agent its next offer
-- changes the agent twice, and every replica parses each message, so a second
-- one would only cost.
local function notify_agent(aid)
  NOTIFIED[aid] = true
end

-- What a desktop shows, as agent_view.lua reads it: the agent's pairs, then
-- each held contact still offered, whole. A held contact's state is read
-- alone first: most are accepted already, and a whole record costs about ten
-- times one field.
local function agent_view_pairs(aid)
  local a = redis.call('HGETALL', ka(aid))
  if #a == 0 then return nil end
  local out = {a}
  for i = 1, #a, 2 do
    local f = a[i]
    if string.sub(f, 1, 2) == 'h:' then
      local cid = string.sub(f, 3)
      local st = STATES[cid]
      if st == nil then st = redis.call('HGET', kc(cid), 'st') end
      if st == 'offered' then out[#out + 1] = redis.call('HGETALL', kc(cid)) end
    end
  end
  return out
end

-- The notifications of the call, each carrying the agent's view as it is now
-- that the call's writes are done: `<tag>|a|<agent>` LF JSON [agent pairs,
-- offered contact pairs...] (router/store/notify.py). A replica pushes it to
-- the agent's desktops as it is, without reading the agent again.
local function publish_views()
  for aid, _ in pairs(NOTIFIED) do
    if aid ~= '|t' then
      local topic = T_AGENT .. aid
      local view = agent_view_pairs(aid)
      if view then topic = topic .. '\n' .. cjson.encode(view) end
      redis.call('SPUBLISH', K_NOTIFY, topic)
    end
  end
end
