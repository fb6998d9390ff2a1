-- Spreads requests over the loaded users: PATH_PREFIX + random user id + PATH_SUFFIX.
local users = tonumber(os.getenv("BENCH_USERS") or "100000")
local prefix = os.getenv("BENCH_PREFIX") or "/api/recommendations/u"
local suffix = os.getenv("BENCH_SUFFIX") or "?k=10"

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or os.time())
end

request = function()
  return wrk.format("GET", prefix .. math.random(0, users - 1) .. suffix)
end
