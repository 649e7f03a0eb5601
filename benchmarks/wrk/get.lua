-- wrk script for GET (hello world): only adds the JSON report line.
-- usage: wrk -t2 -c64 -d10s -s benchmarks/wrk/get.lua http://127.0.0.1:PORT/

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
