-- wrk script for the agent-freed path: POST .../contacts/{cid}/complete.
-- usage: wrk -tC -cC -d10s -s benchmarks/wrk/complete.lua http://127.0.0.1:PORT -- \
--          /v1/workspaces/WS TOKEN CONTACT_PREFIX AGENT_PREFIX PER_AGENT
-- Run with as many threads as connections: thread i owns agent i and its one
-- connection, so completions of one agent's chain are strictly sequential
-- (contact n+1 is assigned by the script that completes contact n).
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local base, headers, cprefix, body, per_agent
local n = 0
exhausted = 0
function init(args)
  base = args[1]
  headers = { ["Authorization"] = "Bearer " .. args[2],
              ["Content-Type"] = "application/json" }
  cprefix = string.format("%s-%04d", args[3], tid)
  body = string.format('{"agent_id":"%s-%04d"}', args[4], tid)
  per_agent = tonumber(args[5])
  -- wrk calls request() once on the first thread (tid 0) after init() to count the
  -- requests in the string (script_verify_request); that call is not sent, so it
  -- must not use up the thread's first contact.
  if tid == 0 then n = -1 end
end

function request()
  if n < 0 then
    n = 0
    return wrk.format("GET", "/healthz", {}, nil)
  end
  if n >= per_agent then
    -- chain used up: stop this thread (its connection) and flag the run
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/healthz", {}, nil)
  end
  local cid = string.format("%s-%06d", cprefix, n)
  n = n + 1
  return wrk.format("POST", base .. "/contacts/" .. cid .. "/complete", headers, body)
end

function done(summary, latency, requests)
  local ex = 0
  for _, t in ipairs(threads) do ex = ex + (t:get("exhausted") or 0) end
  report(summary, latency, ex)
end
