-- wrk script for benchmarks/request_path.py and auth_path.py: GET /api/v1/products/{random id}.
--
-- Every peer gets the same request bytes (the bearer token included, which only
-- peer (b) checks; bastion's anonymous target gets no token), and ids are drawn at
-- random so that no single hot row is what gets measured. wrk counts only status
-- >= 400 as errors, so non-2xx answers are counted here. The summary is printed as
-- one JSON line the runner parses.
--
-- Environment: BENCH_PRODUCTS (ids are 1..N), BENCH_TOKEN (Authorization: Bearer),
-- BENCH_SEED; for auth_path.py also BENCH_API_KEY (X-API-Key), BENCH_METHOD (GET or
-- POST), BENCH_PATH_SUFFIX (appended to the product path) and BENCH_IDEMPOTENCY_KEY
-- ("1": a fresh Idempotency-Key on every request, unique across wrk processes).

local products = tonumber(os.getenv("BENCH_PRODUCTS") or "10000")
local token = os.getenv("BENCH_TOKEN") or ""
local seed = tonumber(os.getenv("BENCH_SEED") or "1")
local api_key = os.getenv("BENCH_API_KEY") or ""
local method = os.getenv("BENCH_METHOD") or ""
if method == "" then method = "GET" end
local suffix = os.getenv("BENCH_PATH_SUFFIX") or ""
local keyed = os.getenv("BENCH_IDEMPOTENCY_KEY") == "1"

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
  if api_key ~= "" then
    wrk.headers["X-API-Key"] = api_key
  end
  sent = 0
  if keyed then
    -- Keys must never repeat, not even across the warm-up and measured wrk runs
    -- against one server: 64 random bits from the kernel per thread, then a counter.
    local urandom = assert(io.open("/dev/urandom", "rb"))
    local bytes = urandom:read(8)
    urandom:close()
    key_prefix = bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
      .. "-" .. (thread_number or 0) .. "-"
  end
end

function request()
  local path = "/api/v1/products/" .. math.random(1, products) .. suffix
  if not keyed then
    if method == "GET" then
      return wrk.format("GET", path)
    end
    return wrk.format(method, path, nil, "")
  end
  sent = sent + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["Idempotency-Key"] = key_prefix .. sent
  return wrk.format(method, path, headers, "")
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
