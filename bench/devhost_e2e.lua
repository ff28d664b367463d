-- devhost_e2e.lua — wrk script for bench/devhost_e2e.mjs: POST device-to-cloud messages to
-- devhost's IoT Hub device API over keep-alive connections, rotating over the devices listed in
-- the Lua file $BENCH_DEVICES_LUA (a table of {path, auth}), each body the web simulator's
-- shape with a messageId unique across threads. Prints a one-line JSON summary.
local devs = dofile(os.getenv("BENCH_DEVICES_LUA"))
local threads = 0
local n = 0

setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end

request = function()
  n = n + 1
  local d = devs[(n + tid * 7) % #devs + 1]
  local body = string.format('{"temperature":%d.5,"humidity":50,"messageId":%d}', 20 + n % 10, tid * 100000000 + n)
  return wrk.format("POST", d.path, { ["Authorization"] = d.auth }, body)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p99_ms":%.3f,"refused":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
