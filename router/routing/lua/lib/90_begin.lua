-- The start of every call ------------------------------------------------------

-- Starts a function call: its keys and arguments, the time, fresh caches.
local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  RT_KEY = keys[1]
  TAG = string.sub(RT_KEY, 1, -4)
  local t = redis.call('TIME')
  NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  ACTOR = 'system'
  K_EVENTS = TAG .. ':events'
  K_TIMERS = TAG .. ':timers'
  K_SLA_RUN = TAG .. ':sla:run'
  K_COUNTS = TAG .. ':stats:counts'
  RT, CHANNELS, POOLS, NOTIFIED = {}, {}, {}, {}
end

-- The end of every function call: the notified agents' views go out.
local function finish_call(...)
  if next(NOTIFIED) ~= nil then publish_views() end
  return ...
end
