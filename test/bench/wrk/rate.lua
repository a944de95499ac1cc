-- load.lua at a fixed rate: BENCH_RATE requests/s per wrk thread (run it with -t1), keys from
-- KEYS_FILE in turn. Debian's wrk has no wrk2 -R, so each request waits in delay() for its
-- slot on a schedule (start + n / rate, read from CLOCK_MONOTONIC through LuaJIT's ffi: wrk
-- gives Lua no clock finer than a second). wrk starts a request's latency after its delay,
-- so a server that falls behind would hide its queue: `late` counts the requests sent a
-- millisecond or more after their slot, and the run's rate shows whether the schedule held.
-- Every answer's status is counted. Prints one JSON line prefixed with BENCH at the end.
local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } kp_bench_timespec;
int clock_gettime(int clock_id, kp_bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("kp_bench_timespec")
local function nowUs()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local path = os.getenv("BENCH_PATH") or "/"
local rate = tonumber(os.getenv("BENCH_RATE") or "")
if not rate or rate <= 0 then error("rate.lua needs BENCH_RATE, requests per second") end
local interval = 1e6 / rate
local keys = {}
local file = os.getenv("KEYS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then keys[#keys + 1] = line end
  end
end
local requests = {}
local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

init = function(args)
  if #keys == 0 then
    requests[1] = wrk.format("GET", path)
  else
    for i, k in ipairs(keys) do
      requests[i] = wrk.format("GET", path, { Authorization = "Bearer " .. k })
    end
  end
end

-- A global, so that done() (which runs in the main Lua state) can read it from each thread.
late = 0
local start, slots = nil, 0
delay = function()
  local now = nowUs()
  if not start then start = now end
  local slot = start + slots * interval
  slots = slots + 1
  local wait = slot - now
  if wait <= -1000 then late = late + 1 end
  -- wrk's timers count whole milliseconds; rounding keeps the sends centred on their slots.
  if wait <= 0 then return 0 end
  return math.floor(wait / 1000 + 0.5)
end

-- Every status counted (a global per thread, like `late`): the rows must be all 200s.
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

local n = 0
request = function()
  n = n + 1
  return requests[(n % #requests) + 1]
end

done = function(summary, latency, _)
  local e = summary.errors
  local lateAll = 0
  local byStatus, sparts = {}, {}
  for _, t in ipairs(threads) do
    lateAll = lateAll + t:get("late")
    for s, c in pairs(t:get("statuses")) do byStatus[s] = (byStatus[s] or 0) + c end
  end
  for s, c in pairs(byStatus) do sparts[#sparts + 1] = string.format('"%d":%d', s, c) end
  io.write(string.format(
    'BENCH {"requests":%d,"durationUs":%d,"bytes":%d,"nonOk":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeouts":%d,"p50Us":%d,"p90Us":%d,"p99Us":%d,"maxUs":%d,"meanUs":%.1f,"late":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean, lateAll, table.concat(sparts, ",")))
end
