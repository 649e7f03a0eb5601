-- The JSON line benchmarks/e2e.py reads from every wrk run; loaded by the
-- request scripts (wrk runs one script, which loads this file beside it).
function report(summary, latency, exhausted)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"min_us":%d,"p10_us":%d,"p50_us":%d,' ..
    '"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,' ..
    '"err_timeout":%d,"exhausted":%d}\n',
    summary.requests, summary.duration, latency.min, latency:percentile(10),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, exhausted))
end
