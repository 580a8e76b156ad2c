-- wrk script for benchmarks/request_path.py: GET /api/v1/products/{random id}.
--
-- Every target gets the same request bytes (the bearer token included, which only
-- peer (b) checks), and ids are drawn at random so that no single hot row is what
-- gets measured. wrk counts only status >= 400 as errors, so non-2xx answers are
-- counted here. The summary is printed as one JSON line the runner parses.
--
-- Environment: BENCH_PRODUCTS (ids are 1..N), BENCH_TOKEN, BENCH_SEED.

local products = tonumber(os.getenv("BENCH_PRODUCTS") or "10000")
local token = os.getenv("BENCH_TOKEN") or ""
local seed = tonumber(os.getenv("BENCH_SEED") or "1")

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("thread_number", thread_count)
  table.insert(threads, thread)
end

function init(args)
  non2xx = 0
  -- A fixed seed per thread: the same id sequence for every target and repetition.
  math.randomseed(seed * 1000 + (thread_number or 0))
  wrk.headers["Accept"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  return wrk.format("GET", "/api/v1/products/" .. math.random(1, products))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%.1f,"p90_us":%.1f,' ..
    '"p99_us":%.1f,"max_us":%.1f,"mean_us":%.1f,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"non2xx":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout, bad))
end
