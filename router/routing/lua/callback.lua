-- A waiting contact becomes a callback: the caller hangs up and keeps its
-- place (rank and arrival unchanged, no new arrival counted), to be called
-- back on the callback channel; with a window, held until it opens.
-- KEYS: [1] runtime hash, [2] contact hash
-- ARGV: [1] actor, [2] phone (personal: stored in `pii` only), [3] not_before ms
--       or '', [4] not_after ms or '', [5] max attempts, [6] retry gap ms, [7] channel
-- Returns {1, contact} (also for the same request again) or {-1, 'not_found'} /
-- {-2, state, why}.
ACTOR = ARGV[1]
local c, err = require_contact(KEYS[2])
if err then return err end
if c.cb then
  -- the same request again (a gateway's retry) changes nothing and answers as before
  local same = (c.cbnb or '') == ARGV[3] and (c.cbna or '') == ARGV[4]
  if same and cjson.decode(c.pii or '{}').c == ARGV[2] then return { 1, contact_reply(c) } end
  return { -2, c.st, 'the contact is already a callback' }
end
if c.st ~= 'queued' then return { -2, c.st, 'only a waiting (queued) contact can be called back' } end
local ch = ARGV[7]
local chn = channel(ch)
local served = false
for _, pname in ipairs(reached_pools(c)) do
  local p = pool(pname)
  for _, pc in ipairs(p and p.channels or {}) do
    if pc == ch then served = true end
  end
end
if not chn or (not served and not (c.tgt and c.tgt ~= '')) then
  return { -2, c.st, 'no pool the contact waits in serves the callback channel ' .. ch }
end
dequeue(c)  -- from the queues of its own channel: it comes back on the callback channel
local pii = (c.pii and c.pii ~= '') and cjson.decode(c.pii) or {}
pii.c = ARGV[2]
c.pii = cjson.encode(pii)
if c.ch ~= ch then c.pch = c.ch end
c.ch, c.w = ch, tostring(chn.w)
c.cb, c.cba, c.cbm, c.cbg = '1', '0', ARGV[5], ARGV[6]
local f = { 'pii', c.pii, 'ch', c.ch, 'w', c.w, 'cb', 1, 'cba', 0, 'cbm', c.cbm, 'cbg', c.cbg }
if ARGV[3] ~= '' then c.cbnb = ARGV[3]; f[#f + 1] = 'cbnb'; f[#f + 1] = ARGV[3] end
if ARGV[4] ~= '' then c.cbna = ARGV[4]; f[#f + 1] = 'cbna'; f[#f + 1] = ARGV[4] end
redis.call('HSET', KEYS[2], unpack(f))
cb_start(c)
return { 1, contact_reply(c) }
