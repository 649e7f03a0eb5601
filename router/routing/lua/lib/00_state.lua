-- Shared routing library: the top of the `router` Redis Functions library, in
-- sections (this directory, joined in the order of LIB_SECTIONS)
-- (router/routing/library.py appends each routing script as a registered function).
--
-- KEYS[1] is always the workspace's runtime hash `{ws:<name>}:rt`. Every other
-- key is built from its hash tag, so all keys live on one Cluster slot; which
-- agent or contact a decision touches is only known inside the script, which
-- is why keys are derived here rather than listed in KEYS (key names mirror
-- router/store/keys.py). Loops are bounded by the config (pools x channels) or by
-- SCAN_LIMIT, never by the size of a queue or of the agent population.
--
-- Time comes from Redis TIME so that every replica ranks and expires alike.

-- Per-call state: set by begin() at the start of every function call (the
-- library's top level runs once, when it is loaded, not per call).
local KEYS, ARGV, RT_KEY, TAG, NOW, ACTOR
-- NOW as a string, for command arguments: Redis turns every number argument into a
-- string with snprintf (luaArgsToRedisArgv), which a call's many writes of the time
-- paid each (number formatting was ~6% of Redis' CPU per lifecycle, perf)
local NOWS
local K_EVENTS, K_TIMERS, K_SLA_RUN, K_COUNTS, K_NOTIFY
-- the notification topics' prefixes: the timer wake-up, an agent's view
local T_WAKE, T_AGENT
-- Per call: the current minute as a string (statistics buckets, lib/20_events.lua
-- stat) and the earliest due time in the timers set once read (false: the set
-- was empty), lib/40_contacts.lua add_timer.
local MINUTES, TIMER_HEAD
-- Per call: the state each contact was given by this call's writes (contact id
-- -> st), so an agent's view (lib/20_events.lua agent_view_pairs) needs no
-- read of it. Every write of a contact's `st` in a routing call notes it.
local STATES
local RT, CHANNELS, POOLS, NOTIFIED
-- The runtime fields read so far (and the channels and pools parsed from them),
-- kept across calls per workspace while its config stays the same. Redis
-- advises against keeping context between calls; this keeps nothing the
-- keyspace does not say: a memo of the runtime hash, checked against it at the
-- start of every call (begin() reads `version` and `vat`, which only
-- config_put.lua writes, with every field; the archiver's `arch` is read afresh
-- each call), so a call sees what the hash holds. One HMGET instead of ~12
-- field reads a call. It lives as long as the library is loaded on this server
-- (a promoted replica starts empty); bounded to RT_CACHE_MAX workspaces.
local RT_CACHE, RT_CACHED, RT_CACHE_MAX = {}, 0, 1000
-- Per workspace, the names of its fixed keys (begin): derived from KEYS[1]
-- alone, so they never go stale; bounded like RT_CACHE.
local NAMES, NAMED = {}, 0
-- Parsed forms of the few distinct strings routing parses on every call (a
-- contact's stages, the pools it reached, an agent's pools), by the string
-- itself, so they never go stale: parsing "0:cards|120000:loans" into the pools
-- reached took ~2.7 µs, several times a call. Shared across calls: callers only
-- read them. Bounded: emptied when full.
local PARSED, PARSED_N, PARSED_MAX = {}, 0, 4000
local function parsed(key) return PARSED[key] end
local function keep_parsed(key, value)
  if PARSED_N >= PARSED_MAX then PARSED, PARSED_N = {}, 0 end
  PARSED_N = PARSED_N + 1
  PARSED[key] = value
  return value
end
-- Queue entries / ready agents looked at per pool and channel per decision.
local SCAN_LIMIT = 16
-- Ready agents read first when choosing one (select_agent), then the rest.
local FIRST_SCAN = 4
-- Epoch subtracted from idle times so a strategy score fits a double exactly.
local EPOCH = 1700000000000
local SCORE_STEP = 1000000000000
local MAX_PULLS = 50
-- the same bounds as ZRANGE arguments, formatted once (see NOWS)
local FIRST_SCAN_LAST, SCAN_LIMIT_LAST = (FIRST_SCAN - 1) .. "", (SCAN_LIMIT - 1) .. ""


local function kc(cid) return TAG .. ':c:' .. cid end
local function ktl(cid) return TAG .. ':c:' .. cid .. ':tl' end
local function ka(aid) return TAG .. ':a:' .. aid end
local function kq(pool, ch) return TAG .. ':q:' .. pool .. ':' .. ch end
local function kqa(pool) return TAG .. ':qa:' .. pool end
local function kr(pool, ch) return TAG .. ':r:' .. pool .. ':' .. ch end
local function km(pool) return TAG .. ':m:' .. pool end
local function ks(pool) return TAG .. ':s:' .. pool end
local function kps(pool) return TAG .. ':ps:' .. pool end
local function kaq(aid) return TAG .. ':aq:' .. aid end
local function kla(cust) return TAG .. ':la:' .. cust end
-- every accepted config version: `<v>` the document, `<v>:meta` who, when, why
local function kcv() return TAG .. ':config:versions' end
-- SLA clocks live in the contact's record (fields `<clock>.<field>`; see 50_sla)
local function ksla(cid) return kc(cid) end

local function split(s, sep)
  local out = {}
  if s == nil or s == false or s == '' then return out end
  for part in string.gmatch(s, '([^' .. sep .. ']+)') do out[#out + 1] = part end
  return out
end

local function hmap(key)
  local r = redis.call('HGETALL', key)
  if #r == 0 then return nil end
  local t = {}
  for i = 1, #r, 2 do t[r[i]] = r[i + 1] end
  return t
end
