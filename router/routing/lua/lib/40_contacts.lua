-- Contacts ------------------------------------------------------------------

local function load_contact(cid)
  return hmap(kc(cid))
end

-- stages = "after_ms:p1,p2|after_ms:p3" -> list of {after, {pools}} (shared: read only)
local function stages_of(c)
  local key = 's' .. (c.stages or '')
  local out = parsed(key)
  if out then return out end
  out = {}
  for _, s in ipairs(split(c.stages, '|')) do
    local colon = string.find(s, ':', 1, true)
    out[#out + 1] = { tonumber(string.sub(s, 1, colon - 1)), split(string.sub(s, colon + 1), ',') }
  end
  return keep_parsed(key, out)
end

-- Pools of the stages reached so far, in stage order, without repeats (shared: read only).
local function reached_pools(c)
  local key = 'r' .. c.stage .. '|' .. (c.stages or '')
  local out = parsed(key)
  if out then return out end
  local seen = {}
  out = {}
  local st = stages_of(c)
  for i = 1, math.min(tonumber(c.stage), #st) do
    for _, p in ipairs(st[i][2]) do
      if not seen[p] then seen[p] = true; out[#out + 1] = p end
    end
  end
  return keep_parsed(key, out)
end

-- `c.unqueued`: a new contact, not queued yet (create.lua), is in no queue to
-- leave; never stored (create writes the record before it is set).
local function enqueue(c)
  c.unqueued = nil
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
  if c.unqueued then return end
  if c.tgt and c.tgt ~= '' then redis.call('ZREM', kaq(c.tgt), c.id) end
  for _, p in ipairs(reached_pools(c)) do
    redis.call('ZREM', kq(p, c.ch), c.id)
    redis.call('ZREM', kqa(p), c.id)
  end
end

local function set_state(c, st)
  c.st = st
  STATES[c.id] = st
  redis.call('HSET', kc(c.id), 'st', st)
end

-- A timer due before the workspace's next one wakes the replicas' timer
-- workers (`<tag>|t`, router/store/notify.py): they sleep until the next due
-- time they know of, so an idle replica sends Redis nothing.
local function add_timer(due, member)
  -- due times are whole ms: '%d' formats them cheaper than a number argument would be
  if type(due) == 'number' and due % 1 == 0 then due = string.format('%d', due) end
  if not NOTIFIED['|t'] then
    -- read once a call: a later timer of the call that is not before this
    -- head is not before the workers' next claim either (they claim by the
    -- head they last saw, or earlier)
    if TIMER_HEAD == nil then
      local head = redis.call('ZRANGE', K_TIMERS, '0', '0', 'WITHSCORES')
      TIMER_HEAD = #head > 0 and tonumber(head[2])
    end
    if not TIMER_HEAD or tonumber(due) < TIMER_HEAD then
      NOTIFIED['|t'] = true
      redis.call('SPUBLISH', K_NOTIFY, T_WAKE)
    end
  end
  redis.call('ZADD', K_TIMERS, due, member)
end
