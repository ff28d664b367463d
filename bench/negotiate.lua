-- negotiate.lua — wrk script: POST a host-shaped Negotiate invocation (no binding value, so
-- the handler mints a token from AzureSignalRConnectionString — the costlier path) and print
-- a one-line JSON summary. Used by bench/negotiate.sh; with BENCH_PATH=/ it measures the
-- readiness probe (GET /) instead. A BENCH_PATH under /api/ is a request to devhost's front
-- (bench/devhost_negotiate.sh): POST with an empty body, as the SignalR client negotiates.
local path = os.getenv("BENCH_PATH") or "/Negotiate"
if path == "/" then
  wrk.method = "GET"
elseif path:sub(1, 5) == "/api/" then
  wrk.method = "POST"
  wrk.body = ""
else
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json; charset=utf-8"
  wrk.headers["X-Azure-Functions-InvocationId"] = "00000000-0000-0000-0000-000000000000"
  wrk.body = '{"Data":{"req":{"Url":"http://localhost:7071/api/negotiate?negotiateVersion=1",' ..
             '"Method":"POST","Query":{"negotiateVersion":"1"},' ..
             '"Headers":{"x-ms-client-principal-id":["bench-user"],"Content-Length":["0"]},' ..
             '"Params":{},"Identities":[]}},"Metadata":{"sys":{"MethodName":"Negotiate"}}}'
end
wrk.path = path

local non2xx = 0
response = function(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end

done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"path":"%s","requests":%d,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,"errors":%d}\n',
    path, summary.requests, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status +
      summary.errors.timeout))
end
