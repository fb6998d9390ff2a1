-- Spreads requests over the loaded users: PATH_PREFIX + random user id + PATH_SUFFIX, and
-- counts answers marked "degraded" (the same body check runs for every endpoint, so wrk does
-- the same work whichever endpoint it drives).
local users = tonumber(os.getenv("BENCH_USERS") or "100000")
local prefix = os.getenv("BENCH_PREFIX") or "/api/recommendations/u"
local suffix = os.getenv("BENCH_SUFFIX") or "?k=10"
local threads = {}
degraded = 0

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(seed or os.time())
end

request = function()
  return wrk.format("GET", prefix .. math.random(0, users - 1) .. suffix)
end

response = function(status, headers, body)
  if string.find(body, '"source":"degraded"', 1, true) then
    degraded = degraded + 1
  end
end

done = function(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("degraded")
  end
  io.write(string.format("Degraded answers: %d\n", total))
end
