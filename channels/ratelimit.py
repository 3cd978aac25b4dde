"""Per-channel send rate limits shared by every worker.

Providers cap requests per second per account, not per worker process, so the
bucket lives in Redis and one Lua script refills and takes tokens atomically.
`acquire()` never sleeps: it says how long to wait, and the caller chooses
between a short wait and rescheduling the delivery (a long wait must not hold a
worker). Without Redis (the embedded defaults) an in-process bucket stands in;
it limits one process only, which is all an embedded setup runs.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

KEY_PREFIX = "encore:ratelimit:"

# KEYS[1] bucket hash; ARGV rate/s, burst, n. Uses the server clock so workers
# on different hosts agree. Tokens are only taken when all n are available, so a
# refused caller leaves the bucket as it was. Returns the wait as a string
# (Lua numbers become integers on the way out).
_TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= n then
  tokens = tokens - n
else
  wait = (n - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class Limiter(Protocol):
    def acquire(self, n: int = 1) -> float: ...


def _check(rate_per_sec: float, burst: int, n: int) -> None:
    if rate_per_sec <= 0 or not math.isfinite(rate_per_sec):
        raise ValueError("rate_per_sec must be a positive number")
    if burst < 1:
        raise ValueError("burst must be at least 1")
    if not 1 <= n <= burst:
        raise ValueError(f"n must be between 1 and burst ({burst}); got {n}")


class RateLimiter:
    """A token bucket in Redis, one per channel, shared by all workers."""

    def __init__(self, redis_client: Any, channel: str, rate_per_sec: float, burst: int) -> None:
        _check(rate_per_sec, burst, 1)
        self.key = KEY_PREFIX + channel
        self.rate_per_sec = float(rate_per_sec)
        self.burst = int(burst)
        self._script = redis_client.register_script(_TOKEN_BUCKET_LUA)

    def acquire(self, n: int = 1) -> float:
        """Take n tokens: 0.0 when granted, else the seconds until they would be."""
        _check(self.rate_per_sec, self.burst, n)
        wait = self._script(keys=[self.key], args=[self.rate_per_sec, self.burst, n])
        return float(wait.decode() if isinstance(wait, bytes) else wait)


class LocalRateLimiter:
    """The same bucket in process memory, for runs without Redis."""

    def __init__(
        self,
        rate_per_sec: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check(rate_per_sec, burst, 1)
        self.rate_per_sec = float(rate_per_sec)
        self.burst = int(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def acquire(self, n: int = 1) -> float:
        """Take n tokens: 0.0 when granted, else the seconds until they would be."""
        _check(self.rate_per_sec, self.burst, n)
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_sec)
            self._stamp = now
            if self._tokens >= n:
                self._tokens -= n
                return 0.0
            return (n - self._tokens) / self.rate_per_sec


def make_rate_limiter(
    channel: str, rate_per_sec: float, burst: int, redis_client: Any | None = None
) -> Limiter:
    """Redis-backed when a client is given, in-process otherwise."""
    if redis_client is None:
        return LocalRateLimiter(rate_per_sec, burst)
    return RateLimiter(redis_client, channel, rate_per_sec, burst)
