-- wrk script for the admission path: POST {base}/contacts with unique ids.
-- usage: wrk -t2 -c64 -d10s -s benchmarks/wrk/create.lua http://127.0.0.1:PORT -- \
--          /v1/workspaces/WS TOKEN PREFIX
-- Same bodies as benchmarks/loadgen.py `create` (every 4th contact is vip).

local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local base, headers, prefix
local n = 0
function init(args)
  base = args[1]
  headers = { ["Authorization"] = "Bearer " .. args[2],
              ["Content-Type"] = "application/json" }
  prefix = args[3] .. "-w" .. tid
end

function request()
  local cid = string.format("%s-%07d", prefix, n)
  local tier = (n % 4 == 0) and "vip" or "standard"
  local body = string.format(
    '{"id":"%s","channel":"voice","intent":"card","customer":{"id":"cu-%d","tier":"%s"}}',
    cid, (tid * 7919 + n) % 100000, tier)
  n = n + 1
  return wrk.format("POST", base .. "/contacts", headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"min_us":%d,"p10_us":%d,"p50_us":%d,' ..
    '"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d,"exhausted":0}\n',
    summary.requests, summary.duration, latency.min, latency:percentile(10),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
