-- Applies one claimed routing timer and acknowledges it in the same script,
-- so the effect and the ack cannot part. Every effect first checks that the
-- contact is still in the state the timer was set for: a re-fired or stale
-- timer is a no-op.
-- KEYS: [1] runtime hash, [2] leased timers zset, [3] lease info hash
-- ARGV: [1] timer member "kind|contact|arg"
ACTOR = 'system:timer'
local member = ARGV[1]
redis.call('ZREM', KEYS[2], member)
redis.call('HDEL', KEYS[3], member)
local parts = split(member, '|')
local kind, cid, arg = parts[1], parts[2], parts[3]
local c = load_contact(cid)
if c == nil then return { 0, 'gone' } end
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
  if c.st ~= 'queued' then return { 0, 'stale' } end
  dequeue(c)
  finish(c, 'expired')
  record({ type = 'contact.expired', contact = cid, state = 'expired',
           wait_ms = NOW - tonumber(c.enq), reason = 'waited longer than the channel allows' })
elseif kind == 'pref' then
  if c.st ~= 'queued' then return { 0, 'stale' } end
  -- the preference ran out: anyone eligible may take it now
  if try_match(c) then return { 1, kind } end
else
  return { 0, 'unknown' }
end
return { 1, kind }
