-- Drives one path with keys taken in turn from KEYS_FILE (one a line; none: no key).
-- The same script drives the baseline, so the client does the same work in every row.
-- Prints one JSON line prefixed with BENCH at the end.
local path = os.getenv("BENCH_PATH") or "/"
local header = os.getenv("BENCH_HEADER") or "Authorization"
local keys = {}
local file = os.getenv("KEYS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then keys[#keys + 1] = line end
  end
end
local requests = {}

init = function(args)
  -- Pre-formatted requests, one per key: request() does no string work per call.
  if #keys == 0 then
    requests[1] = wrk.format("GET", path)
  else
    for i, k in ipairs(keys) do
      local headers = {}
      headers[header] = (header == "Authorization" and "Bearer " or "") .. k
      requests[i] = wrk.format("GET", path, headers)
    end
  end
end

local n = 0
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end

done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"durationUs":%d,"bytes":%d,"nonOk":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
