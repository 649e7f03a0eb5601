-- A customer's answer to one survey (kind `csat` or `nps`) about a served
-- contact, stored as `rating:<kind>` on the contact: one per kind. A repeated
-- call with the same score is a retry and changes nothing; another score is
-- refused. A score below the policy's threshold for the kind
-- (`sla:<policy>:rating:<kind>`, from `low_rating.<kind>_below`) runs its
-- actions (notify, follow-up contacts). The router checked the kind against
-- the workspace's surveys and the score against the kind's scale.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] kind, [3] score
ACTOR = ARGV[1]
local kind, given = ARGV[2], ARGV[3]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st ~= 'completed' and c.st ~= 'wrap_up' then
  return { -2, c.st, 'only a served contact can be rated' }
end
local field = 'rating:' .. kind
local before = c[field]
if before and before ~= '' then
  if before ~= given then return { -2, c.st, kind .. ' already rated ' .. before } end
  return { 1, contact_reply(c) }
end
local score = tonumber(given)
redis.call('HSET', KEYS[2], field, given)
local pname = c.pool or ''
local ev = { type = 'contact.rated', contact = c.id, agent = c.agent, pool = pname,
             kind = kind, score = score }
-- Live CSAT / NPS, from the counts by kind and score: running totals in the
-- counts hash for Prometheus (router/wfm/exporter.py), per-minute buckets of
-- the pool for the wallboard's window (router/wfm/stats.py). Counted here, not
-- in record(): the score is the label, which no other event has.
redis.call('HINCRBY', K_COUNTS, 'survey|' .. kind .. '|' .. pname .. '|' .. given, 1)
stat(pname, kind .. ':' .. given, 1)
local def = (c.sla or '') ~= '' and rt('sla:' .. c.sla .. ':rating:' .. kind) or nil
if def then
  local bar = string.find(def, '|', 1, true)
  local a = fields(string.sub(def, bar + 1), ';')
  if score < tonumber(string.sub(def, 1, bar - 1)) then
    ev.low = true
    if a[4] ~= '' then ev.notify = notify_targets(c, a[4]) end
    -- one follow-up per action and contact, whichever surveys came back low
    if a[5] ~= '' then ev.followups = followup_timers(c.id, 'rating', a[5]) end
  end
end
record(ev)
return { 1, contact_reply(c) }
