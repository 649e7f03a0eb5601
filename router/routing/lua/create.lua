-- Admits a contact: idempotent on its id, ranks it by virtual arrival time,
-- tries to offer it to a ready agent at once, else queues it in every pool of
-- the stages reached so far.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] contact JSON (fields as stored; see router/routing/engine.py),
--       [3] SLA plan "clock:breach_delta_ms:i.delta_ms,...|..." or ''
-- Returns {created 0|1, contact hash as a flat list} or {-1, reason, pool}.
ACTOR = ARGV[1]
if redis.call('EXISTS', KEYS[2]) == 1 then
  return { 0, contact_reply() }
end
local c = cjson.decode(ARGV[2])
-- runtime fields every creation reads, in one read (lib/10_runtime.lua)
rt_many({ 'ch:' .. c.ch, 'cont_prefer_ms', 'events_maxlen', 'arch' })
local chn = channel(c.ch)
if not chn then return { -1, 'unknown_channel', c.ch } end
c.w = chn.w
c.st = 'queued'
-- stored as strings: a number is formatted at every write (see NOWS)
c.enq = NOWS
c.created = NOWS
c.rank = string.format('%d', NOW - tonumber(c.off))
c.stage = '1'
c.og = '0'
c.agent = ''
local prefer_ms = rt_num('cont_prefer_ms', 0)
if prefer_ms > 0 and c.cust then
  local last = redis.call('GET', kla(c.cust))
  if last then c.pref = last; c.prefu = NOW + prefer_ms end
end
-- leading stages with after 0, then overflow by expected wait
local reasons = advance_stages(c)

-- refuse before writing anything when every reached pool is full and no
-- agent is ready (max queue length)
local pools = reached_pools(c)
local full = nil
local room = false
for _, pname in ipairs(pools) do
  local p = pool(pname)
  if p and (p.maxq == 0 or redis.call('ZCARD', kqa(pname)) < p.maxq) then
    room = true
  elseif p then
    full = pname
  end
  if not room and redis.call('ZCARD', kr(pname, c.ch)) > 0 then room = true end
end
if not room then return { -1, 'queue_full', full or '' } end

local flat = {}
for k, v in pairs(c) do
  if type(v) ~= 'table' then flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
end
-- the SLA clocks' fields are written with the record (their timers scheduled now)
sla_start(c.id, ARGV[3], flat)
redis.call('HSET', KEYS[2], unpack(flat))
STATES[c.id] = 'queued'
c.unqueued = true  -- lib/40_contacts.lua dequeue
local first_pool = reached_pools(c)[1] or c.tgt
-- arrivals that rank ahead of earlier ones, by their offset in whole seconds
-- (bounded by the config's tiers and rules): a waiting contact's expected wait
-- counts those that will overtake it (router/routing/position.py). Not `ao:`:
-- `<kind>:<score>` fields are survey answers (router/wfm/stats.py)
local ahead_s = math.floor(tonumber(c.off) / 1000)
if ahead_s > 0 then
  stat(first_pool, 'arrived', 1, 'ao.' .. ahead_s, 1)
else
  stat(first_pool, 'arrived', 1)
end
if first_pool then  -- arrivals per UTC day, channel and 15 minutes, for forecasts
  local day = math.floor(NOW / 86400000)
  local key = TAG .. ':arr:' .. first_pool .. ':' .. day
  local n = redis.call('HINCRBY', key, c.ch .. '|' .. math.floor((NOW % 86400000) / 900000), '1')
  bucket_expiry(key, n == 1, (day + 1) * 86400, ARRIVALS_TTL)
end
record({ type = 'contact.created', contact = c.id, state = 'queued', channel = c.ch,
         pool = first_pool,
         tier = c.tier, intent = c.intent, rules = c.rules, sla = c.sla,
         explain = { rank = rank_parts(c), tier_offset_ms = tonumber(c.toff),
                     rule_offset_ms = tonumber(c.roff), stages_reached = tonumber(c.stage),
                     stage_reasons = reasons, preferred_agent = c.pref,
                     -- a bot hand-off's routing facts only: never its summary or fields
                     handoff = c.hbot and { bot = c.hbot, intent = c.hint,
                                            confidence = tonumber(c.hconf) } or nil } }, c)
handoff_created(c)
if c.cb then  -- asked for a call back (lib/85_callbacks.lua): never held a line
  cb_start(c)
elseif not try_match(c) then
  enqueue(c)
  schedule_next_stage(c)
  if chn.maxw > 0 then add_timer(NOW + chn.maxw, 'expire|' .. c.id .. '|0') end
  if c.prefu then add_timer(tonumber(c.prefu), 'pref|' .. c.id .. '|0') end
end
return { 1, contact_reply(c) }
