-- rate.lua's fixed-rate schedule with latency free of coordinated omission, and the gaps
-- between answers. Run it with -t1; BENCH_RATE requests/s, keys from KEYS_FILE in turn.
--
-- wrk starts a request's clock when it sends it, so a server that stalls hides its queue:
-- the requests that should have gone out during the stall wait in wrk, unmeasured (only
-- `late` shows them). (wrk 4 then "corrects" the histogram it hands done() by adding, for
-- every value over connections ÷ the average rate, the values an evenly paced client would
-- have seen: a guess from the run's mean, reported here as wrk's own figures.) Here each
-- request is measured from its slot on the schedule instead (start + n / rate), as wrk2 -R
-- does. The slots handed out in delay() are interchangeable among connections, and request() and response() get no connection, so: delay() appends
-- its slot to a FIFO; request() takes the oldest outstanding slot and puts its number in the
-- request (the email address in the path, /v1/email/s<n>@example.com, which the handler
-- echoes as `input` in its JSON body); response() reads the number back from the body and
-- records now − min(slot time, send time) (a send up to half a millisecond early, wrk's
-- timers rounding, counts from the send) in a log-linear histogram (1 µs steps below 1,024 µs,
-- then 1/1,024-1/512 of the value), and now − send time in another (`fromSend`: wrk's own
-- measure before its correction). Endpoints whose answer carries no address (BENCH_ENDPOINTS
-- ip, batch) take a slot too, so the schedule holds, but are not in the histogram.
--
-- Every answer's time is also compared with the previous answer's: the longest gap, and
-- every gap of BENCH_GAP_MIN_US (5,000) or more with its end on the wall clock (ms since the
-- epoch, to match the server's own timestamps), at most 20,000 of them.
--
-- BENCH_ENDPOINTS: comma-separated, in turn for each key: email (GET /v1/email/s<n>@example.com),
-- ip (GET /v1/ip/8.8.8.8), batch (POST /v1/batch, one IP item). Default: email.
-- Prints one JSON line prefixed with BENCH at the end.
local ffi = require("ffi")
local bit = require("bit")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } kp_cofree_timespec;
int clock_gettime(int clock_id, kp_cofree_timespec *tp);
]])
local CLOCK_REALTIME, CLOCK_MONOTONIC = 0, 1
local ts = ffi.new("kp_cofree_timespec")
local function clockUs(id)
  ffi.C.clock_gettime(id, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end
local function nowUs() return clockUs(CLOCK_MONOTONIC) end

local rate = tonumber(os.getenv("BENCH_RATE") or "")
if not rate or rate <= 0 then error("cofree.lua needs BENCH_RATE, requests per second") end
local interval = 1e6 / rate
local gapMin = tonumber(os.getenv("BENCH_GAP_MIN_US") or "") or 5000
local GAP_LIST_MAX = 20000
local endpoints = {}
for e in string.gmatch(os.getenv("BENCH_ENDPOINTS") or "email", "[^,]+") do endpoints[#endpoints + 1] = e end
local keys = {}
local file = os.getenv("KEYS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then keys[#keys + 1] = line end
  end
end
local MARK = "SLOTMARK"
local threads = {}

setup = function(thread)
  threads[#threads + 1] = thread
end

-- Requests pre-formatted: a slot-carrying one as the text before and after the slot number.
local before, after, fixed = {}, {}, {}
local function template(endpoint, headers)
  if endpoint == "email" then
    return wrk.format("GET", "/v1/email/s" .. MARK .. "@example.com", headers)
  elseif endpoint == "ip" then
    return wrk.format("GET", "/v1/ip/8.8.8.8", headers)
  elseif endpoint == "batch" then
    headers["Content-Type"] = "application/json"
    return wrk.format("POST", "/v1/batch", headers, '{"items":[{"type":"ip","value":"8.8.8.8"}]}')
  end
  error("cofree.lua: unknown endpoint " .. endpoint)
end

init = function(args)
  local list = #keys > 0 and keys or { false }
  for _, k in ipairs(list) do
    for _, e in ipairs(endpoints) do
      local headers = {}
      if k then headers["Authorization"] = "Bearer " .. k end
      local text = template(e, headers)
      local i, j = string.find(text, MARK, 1, true)
      local n = #fixed + 1
      if i then
        before[n] = string.sub(text, 1, i - 1)
        after[n] = string.sub(text, j + 1)
        fixed[n] = false
      else
        fixed[n] = text
      end
    end
  end
end

-- Globals, so that done() (the main Lua state) can read them from each thread.
late = 0
hist = {}
histSent = {}
measured = 0
unmatched = 0
maxUs = 0
maxSentUs = 0
statuses = {}
gapMax = 0
gapMaxAt = 0
gapCount = 0
-- Two flat lists: wrk's thread:get() cannot copy a table of tables.
gapAt = {}
gapUs = {}
firstAt = 0
lastAt = 0

local start
local handed = 0 -- slots handed out by delay()
local queue, head, tail = {}, 1, 0 -- FIFO of handed-out slot numbers
local sentAt = {} -- slot number → send time, until its answer
local offset = clockUs(CLOCK_REALTIME) - nowUs()
local previous

delay = function()
  local now = nowUs()
  if not start then start = now end
  local n = handed
  handed = handed + 1
  tail = tail + 1
  queue[tail] = n
  local wait = start + n * interval - now
  if wait <= -1000 then late = late + 1 end
  -- wrk's timers count whole milliseconds; rounding keeps the sends centred on their slots.
  if wait <= 0 then return 0 end
  return math.floor(wait / 1000 + 0.5)
end

local k = 0
request = function()
  local now = nowUs()
  if not start then start = now end
  local n
  if head <= tail then
    n = queue[head]
    queue[head] = nil
    head = head + 1
  else
    -- A request without a delay() before it (a reconnect): a slot of its own, now.
    n = math.floor((now - start) / interval)
  end
  k = k + 1
  local t = (k % #fixed) + 1
  if fixed[t] then return fixed[t] end
  sentAt[n] = now
  return before[t] .. n .. after[t]
end

local function record(h, us)
  local v = math.floor(us)
  if v < 0 then v = 0 end
  if v >= 1024 then
    local s = 0
    while bit.rshift(v, s) >= 1024 do s = s + 1 end
    v = bit.lshift(bit.rshift(v, s), s)
  end
  h[v] = (h[v] or 0) + 1
end

response = function(status, headers, body)
  local now = nowUs()
  statuses[status] = (statuses[status] or 0) + 1
  if previous then
    local g = now - previous
    if g > gapMax then
      gapMax = g
      gapMaxAt = (now + offset) / 1000
    end
    if g >= gapMin then
      gapCount = gapCount + 1
      if #gapAt < GAP_LIST_MAX then
        gapAt[#gapAt + 1] = (now + offset) / 1000
        gapUs[#gapUs + 1] = g
      end
    end
  else
    firstAt = (now + offset) / 1000
  end
  previous = now
  lastAt = (now + offset) / 1000
  local m = body and string.match(body, '"input":"s(%d+)@')
  local n = m and tonumber(m)
  local sent = n and sentAt[n]
  if sent then
    sentAt[n] = nil
    local slot = start + n * interval
    local us = now - (sent < slot and sent or slot)
    record(hist, us)
    if us > maxUs then maxUs = us end
    record(histSent, now - sent)
    if now - sent > maxSentUs then maxSentUs = now - sent end
    measured = measured + 1
  else
    unmatched = unmatched + 1
  end
end

local function percentiles(h, count)
  local values = {}
  for v in pairs(h) do values[#values + 1] = v end
  table.sort(values)
  local want = { 50, 90, 99, 99.9 }
  local out, i, seen = {}, 1, 0
  for _, v in ipairs(values) do
    seen = seen + h[v]
    while i <= #want and seen >= count * want[i] / 100 do
      -- The middle of the bucket: 1 µs wide below 1,024, 1/1,024 of the value above.
      local width = v < 1024 and 1 or bit.lshift(1, math.max(0, math.floor(math.log(v) / math.log(2)) - 9))
      out[i] = v + (width - 1) / 2
      i = i + 1
    end
  end
  for j = i, #want do out[j] = 0 end
  return out
end

done = function(summary, latency, _)
  local e = summary.errors
  local all = { late = 0, measured = 0, unmatched = 0, maxUs = 0, maxSentUs = 0, gapMax = 0, gapMaxAt = 0, gapCount = 0, firstAt = 0, lastAt = 0 }
  local h, hs, byStatus, gapList = {}, {}, {}, {}
  for _, t in ipairs(threads) do
    all.late = all.late + t:get("late")
    all.measured = all.measured + t:get("measured")
    all.unmatched = all.unmatched + t:get("unmatched")
    all.maxUs = math.max(all.maxUs, t:get("maxUs"))
    all.maxSentUs = math.max(all.maxSentUs, t:get("maxSentUs"))
    all.gapCount = all.gapCount + t:get("gapCount")
    if t:get("gapMax") > all.gapMax then
      all.gapMax = t:get("gapMax")
      all.gapMaxAt = t:get("gapMaxAt")
    end
    local f = t:get("firstAt")
    if all.firstAt == 0 or (f > 0 and f < all.firstAt) then all.firstAt = f end
    all.lastAt = math.max(all.lastAt, t:get("lastAt"))
    for v, c in pairs(t:get("hist")) do h[v] = (h[v] or 0) + c end
    for v, c in pairs(t:get("histSent")) do hs[v] = (hs[v] or 0) + c end
    for s, c in pairs(t:get("statuses")) do byStatus[s] = (byStatus[s] or 0) + c end
    local at, us = t:get("gapAt"), t:get("gapUs")
    for i = 1, #at do gapList[#gapList + 1] = string.format("[%.3f,%.0f]", at[i], us[i]) end
  end
  local p = percentiles(h, all.measured)
  local q = percentiles(hs, all.measured)
  local sparts = {}
  for s, c in pairs(byStatus) do sparts[#sparts + 1] = string.format('"%d":%d', s, c) end
  io.write(string.format(
    'BENCH {"requests":%d,"durationUs":%d,"bytes":%d,"nonOk":%d,"connectErrors":%d,"readErrors":%d,"writeErrors":%d,"timeouts":%d,' ..
      '"p50Us":%d,"p90Us":%d,"p99Us":%d,"p999Us":%d,"maxUs":%d,"meanUs":%.1f,"late":%d,"statuses":{%s},' ..
      '"cofree":{"measured":%d,"unmatched":%d,"p50Us":%.1f,"p90Us":%.1f,"p99Us":%.1f,"p999Us":%.1f,"maxUs":%.1f},' ..
      '"fromSend":{"p50Us":%.1f,"p90Us":%.1f,"p99Us":%.1f,"p999Us":%.1f,"maxUs":%.1f},' ..
      '"gaps":{"maxUs":%.0f,"maxAtMs":%.3f,"minUs":%d,"count":%d,"firstAnswerMs":%.3f,"lastAnswerMs":%.3f,"list":[%s]}}\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean, all.late, table.concat(sparts, ","),
    all.measured, all.unmatched, p[1], p[2], p[3], p[4], all.maxUs,
    q[1], q[2], q[3], q[4], all.maxSentUs,
    all.gapMax, all.gapMaxAt, gapMin, all.gapCount, all.firstAt, all.lastAt, table.concat(gapList, ",")))
end
