-- One key, every response's status read: counts the 200s per second of the server's Date
-- header, so the run can show how many requests the limiter admitted in any window.
-- Prints one JSON line prefixed with BENCH at the end.
local path = os.getenv("BENCH_PATH") or "/"
local key = os.getenv("BENCH_KEY") or ""
local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

init = function(args)
  wrk.headers["Authorization"] = "Bearer " .. key
  wrk.path = path
  admitted = {}
  statuses = {}
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    local date = headers["Date"] or headers["date"] or "?"
    admitted[date] = (admitted[date] or 0) + 1
  end
end

done = function(summary, latency, _)
  local perSecond, byStatus = {}, {}
  for _, t in ipairs(threads) do
    for d, c in pairs(t:get("admitted")) do perSecond[d] = (perSecond[d] or 0) + c end
    for s, c in pairs(t:get("statuses")) do byStatus[s] = (byStatus[s] or 0) + c end
  end
  local parts, sparts = {}, {}
  for d, c in pairs(perSecond) do parts[#parts + 1] = string.format('"%s":%d', d, c) end
  for s, c in pairs(byStatus) do sparts[#sparts + 1] = string.format('"%d":%d', s, c) end
  io.write(string.format(
    'BENCH {"requests":%d,"durationUs":%d,"p50Us":%d,"p99Us":%d,"admittedPerSecond":{%s},"statuses":{%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    table.concat(parts, ","), table.concat(sparts, ",")))
end
