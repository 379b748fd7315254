"""Token buckets in Redis: one atomic script call per request, on Redis's own clock.

The script is ``rate_limits.take`` in Lua: every bucket is checked before any is taken from,
and the time is Redis's (``TIME``), so servers whose clocks differ share one budget fairly.
"""

from __future__ import annotations

from typing import Any

from reranker_server.serving.rate_limits import ALLOWED, Bucket, Verdict

# KEYS[1]: the key's hash of buckets. ARGV: n, then name, rate, capacity, cost per bucket, then the TTL (ms).
TAKE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local n = tonumber(ARGV[1])
local after = {}
for i = 0, n - 1 do
  local name = ARGV[2 + i * 4]
  local rate, capacity, cost = tonumber(ARGV[3 + i * 4]), tonumber(ARGV[4 + i * 4]), tonumber(ARGV[5 + i * 4])
  local saved = redis.call('HMGET', KEYS[1], name .. ':tokens', name .. ':stamp')
  local level = capacity
  if saved[1] and saved[2] then
    level = math.min(capacity, tonumber(saved[1]) + math.max(0, now - tonumber(saved[2])) * rate)
  end
  local need = math.min(cost, capacity)
  if level < need then
    return {0, name, tostring((need - level) / rate)}
  end
  after[i] = level - cost
end
for i = 0, n - 1 do
  local name = ARGV[2 + i * 4]
  redis.call('HSET', KEYS[1], name .. ':tokens', tostring(after[i]), name .. ':stamp', tostring(now))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2 + n * 4])
return {1, '', '0'}
"""


def script_args(buckets: tuple[tuple[Bucket, float], ...]) -> list[Any]:
    # a hash left alone for twice its slowest refill is full again: Redis may forget it
    ttl_ms = int(max(b.capacity / b.rate for b, _ in buckets) * 2000) + 1000
    args: list[Any] = [len(buckets)]
    for bucket, cost in buckets:
        args += [bucket.name, repr(bucket.rate), repr(bucket.capacity), repr(cost)]
    return [*args, ttl_ms]


def verdict_of(reply: list[Any], buckets: tuple[tuple[Bucket, float], ...]) -> Verdict:
    allowed, name, wait = reply
    if int(allowed):
        return ALLOWED
    name = name.decode() if isinstance(name, bytes) else str(name)
    bucket = next(b for b, _ in buckets if b.name == name)
    return Verdict.refused(bucket, float(wait))
