-- wrk script for the admission path: POST {base}/contacts with unique ids.
-- usage: wrk -t2 -c64 -d10s -s benchmarks/wrk/create.lua http://127.0.0.1:PORT -- \
--          /v1/workspaces/WS TOKEN PREFIX
-- Same bodies as benchmarks/loadgen.py `create` (every 4th contact is vip).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

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
  report(summary, latency, 0)
end
