-- wrk script for GET (hello world): only adds the JSON report line.
-- usage: wrk -t2 -c64 -d10s -s benchmarks/wrk/get.lua http://127.0.0.1:PORT/
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "report.lua")

function done(summary, latency, requests)
  report(summary, latency, 0)
end
