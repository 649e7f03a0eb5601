-- The customer's rating of a completed contact; a rating below the policy's
-- `low_rating.below` runs its actions (notify, follow-up contacts). A repeated
-- call with the same score is a retry and changes nothing.
-- KEYS: [1] runtime hash, [2] contact hash   ARGV: [1] actor, [2] score
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.st ~= 'completed' and c.st ~= 'wrap_up' then
  return { -2, c.st, 'only a served contact can be rated' }
end
if c.rating and c.rating ~= '' then
  if c.rating ~= ARGV[2] then return { -2, c.st, 'already rated ' .. c.rating } end
  return { 1, contact_reply(c) }
end
local score = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], 'rating', ARGV[2])
local ev = { type = 'contact.rated', contact = c.id, agent = c.agent, score = score }
local def = c.sla ~= '' and rt('sla:' .. c.sla .. ':rating') or nil
if def then
  local bar = string.find(def, '|', 1, true)
  local a = fields(string.sub(def, bar + 1), ';')
  if score < tonumber(string.sub(def, 1, bar - 1)) then
    ev.low = true
    if a[4] ~= '' then ev.notify = notify_targets(c, a[4]) end
    if a[5] ~= '' then ev.followups = followup_timers(c.id, 'rating', a[5]) end
  end
end
record(ev)
return { 1, contact_reply(c) }
