-- Runtime config ------------------------------------------------------------

local function rt(field)
  local v = RT[field]
  if v == nil then
    v = redis.call('HGET', RT_KEY, field) or false
    RT[field] = v
  end
  return v
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
