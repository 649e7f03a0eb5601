-- The start of every call ------------------------------------------------------

-- Starts a function call: its keys and arguments, the time, fresh caches.
local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  RT_KEY = keys[1]
  TAG = string.sub(RT_KEY, 1, -4)
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  NOWS = tostring(NOW)
  ACTOR = 'system'
  K_EVENTS = TAG .. ':events'
  K_TIMERS = TAG .. ':timers'
  K_SLA_RUN = TAG .. ':sla:run'
  K_COUNTS = TAG .. ':stats:counts'
  NOTIFIED = {}
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
