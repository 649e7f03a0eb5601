-- Runtime config ------------------------------------------------------------

local function rt(field)
  local v = RT[field]
  if v == nil then
    v = redis.call('HGET', RT_KEY, field) or false
    RT[field] = v
  end
  return v
end

-- Caches the runtime fields not cached yet in one HMGET: each field read
-- apart is a command of its own, and what a call reads together (a pool's
-- channels, the pools of an agent) is known up front.
local function rt_many(fields)
  local want, seen = {}, {}
  for _, f in ipairs(fields) do
    if RT[f] == nil and not seen[f] then
      seen[f] = true
      want[#want + 1] = f
    end
  end
  if #want == 0 then return end
  if #want == 1 then
    rt(want[1])
    return
  end
  local v = redis.call('HMGET', RT_KEY, unpack(want))
  for i, f in ipairs(want) do RT[f] = v[i] or false end
end

-- The runtime hash was just rewritten (config_put.lua): this call reads it
-- afresh, and the next call of the workspace caches the new version.
local function rt_reset()
  if RT_CACHE[RT_KEY] ~= nil then
    RT_CACHE[RT_KEY] = nil
    RT_CACHED = RT_CACHED - 1
  end
  RT, CHANNELS, POOLS = {}, {}, {}
end

local function rt_num(field, default)
  local v = rt(field)
  if v then return tonumber(v) end
  return default
end

-- ch:<name> = "weight|offer_timeout_ms|auto_accept|wrap_up_ms|max_wait_ms"
local function channel(name)
  local c = CHANNELS[name]
  if c == nil then
    local p = split(rt('ch:' .. name), '|')
    if #p < 5 then
      c = false
    else
      c = { w = tonumber(p[1]), to = tonumber(p[2]), auto = p[3] == '1',
            wrap = tonumber(p[4]), maxw = tonumber(p[5]) }
    end
    CHANNELS[name] = c
  end
  return c
end

-- pool:<name> = "strategy|ch1,ch2|max_queue|handle_time_ms|service_level_ms"
local function pool(name)
  local p = POOLS[name]
  if p == nil then
    local f = split(rt('pool:' .. name), '|')
    if #f < 4 then
      p = false
    else
      p = { strategy = f[1], channels = split(f[2], ','), maxq = tonumber(f[3]),
            aht = tonumber(f[4]), sl = tonumber(f[5] or '20000') }
    end
    POOLS[name] = p
  end
  return p
end
