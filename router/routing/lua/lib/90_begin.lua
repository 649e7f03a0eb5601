-- The start of every call ------------------------------------------------------

-- Starts a function call: its keys and arguments, the time, fresh caches.
local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  RT_KEY = keys[1]
  -- the workspace's key names, built once per workspace: every call names them
  local names = NAMES[RT_KEY]
  if names == nil then
    if NAMED >= RT_CACHE_MAX then NAMES, NAMED = {}, 0 end  -- bounded
    NAMED = NAMED + 1
    local tag = string.sub(RT_KEY, 1, -4)
    names = { tag, tag .. ':events', tag .. ':timers', tag .. ':sla:run', tag .. ':stats:counts',
              tag .. ':notify', tag .. '|t', tag .. '|a|' }
    NAMES[RT_KEY] = names
  end
  TAG, K_EVENTS, K_TIMERS, K_SLA_RUN, K_COUNTS, K_NOTIFY, T_WAKE, T_AGENT = unpack(names)
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  NOWS = string.format('%d', NOW)
  MINUTES = nil
  TIMER_HEAD = nil
  ACTOR = 'system'
  NOTIFIED = {}
  STATES = {}
  -- `arch` is the archiver's mark (router/archive/events.py), set without a
  -- new version: read every call, never kept
  -- the version and when it was written: a version number written again
  -- (a write lost in a failover, then the next put) is not the cached one
  local v = redis.call('HMGET', RT_KEY, 'version', 'arch', 'vat')
  local version = v[1] and (v[1] .. '@' .. (v[3] or '')) or false
  local cached = RT_CACHE[RT_KEY]
  if cached == nil or cached.version ~= version then
    if cached == nil then
      if RT_CACHED >= RT_CACHE_MAX then RT_CACHE, RT_CACHED = {}, 0 end  -- bounded
      RT_CACHED = RT_CACHED + 1
    end
    cached = { version = version, rt = {}, channels = {}, pools = {} }
    RT_CACHE[RT_KEY] = cached
  end
  RT, CHANNELS, POOLS = cached.rt, cached.channels, cached.pools
  RT.arch = v[2] or false
end

-- The end of every function call: the notified agents' views go out.
local function finish_call(...)
  if next(NOTIFIED) ~= nil then publish_views() end
  return ...
end
