"""Per-API-key rate limits: what a key may do, and the token bucket every enforcer follows.

A bucket holds up to its burst and refills at its rate. A request needs ``min(cost, burst)``
tokens and takes ``cost``: a request larger than the burst waits for a full bucket and leaves it
in debt, so no request is refused for good and the long-run rate still holds. The Redis script
(``redis_buckets.py``) is this arithmetic in Lua; the tests hold the two to the same answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

REQUESTS = "requests_per_second"
PAIRS = "pairs_per_second"
_BURSTS = {REQUESTS: "request_burst", PAIRS: "pair_burst"}
UNLIMITED = "unlimited"


@dataclass(frozen=True)
class Bucket:
    name: str  # the limit's name, as a 429 says it
    rate: float  # tokens per second
    capacity: float  # the burst

    def share(self, fleet_size: int) -> Bucket:
        """This server's part when each server enforces the limit alone."""
        n = max(1, fleet_size)
        return replace(self, rate=self.rate / n, capacity=self.capacity / n)


@dataclass(frozen=True)
class Limits:
    """None: not set here (a key's own limits fall back to the defaults); inf: no limit."""

    requests_per_second: float | None = None
    pairs_per_second: float | None = None
    request_burst: float | None = None  # default: one second's worth
    pair_burst: float | None = None

    def overridden_by(self, own: Limits) -> Limits:
        """A key's own limits win, field by field, over the server's defaults."""
        return Limits(**{f.name: v if (v := getattr(own, f.name)) is not None else getattr(self, f.name)
                         for f in fields(self)})  # fmt: skip

    def buckets(self) -> tuple[Bucket, ...]:
        out = []
        for name in (REQUESTS, PAIRS):
            rate = getattr(self, name)
            if rate is None or math.isinf(rate):
                continue
            burst = getattr(self, _BURSTS[name])
            out.append(Bucket(name, rate, rate if burst is None or math.isinf(burst) else burst))
        return tuple(out)


def parse_limits(options: list[str]) -> Limits:
    """``["requests_per_second=5", "pair_burst=2000"]`` -> Limits; ValueError naming what is wrong."""
    names = {f.name for f in fields(Limits)}
    values: dict[str, float] = {}
    for option in options:
        name, sep, text = option.partition("=")
        if not sep or name not in names:
            raise ValueError(f"{option!r}: expected one of {', '.join(sorted(names))} as name=number")
        if text == UNLIMITED:
            values[name] = math.inf
            continue
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name}: {text!r} is not a number (or {UNLIMITED!r})") from None
        if not value > 0 or math.isinf(value):
            raise ValueError(f"{name}: must be a positive number, got {text!r}")
        values[name] = value
    return Limits(**values)


@dataclass
class Level:
    tokens: float
    stamp: float  # when ``tokens`` was true, in the clock's seconds


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: str | None = None  # the limit that refused
    retry_after: float = 0.0  # seconds until the request would pass
    rate: float = 0.0
    capacity: float = 0.0
    fleet_wide: bool = True  # False: this server's share, enforced alone

    @classmethod
    def refused(cls, bucket: Bucket, wait: float) -> Verdict:
        return cls(False, bucket.name, wait, bucket.rate, bucket.capacity)


ALLOWED = Verdict(True)


def level_now(level: Level | None, bucket: Bucket, now: float) -> float:
    if level is None:
        return bucket.capacity
    return min(bucket.capacity, level.tokens + max(0.0, now - level.stamp) * bucket.rate)


def take(levels: dict[str, Level], buckets: tuple[tuple[Bucket, float], ...], now: float) -> Verdict:
    """Take each (bucket, cost) from ``levels`` if every bucket has enough; else change nothing."""
    after: dict[str, float] = {}
    for bucket, cost in buckets:
        current = level_now(levels.get(bucket.name), bucket, now)
        need = min(cost, bucket.capacity)
        if current < need:
            return Verdict.refused(bucket, (need - current) / bucket.rate)
        after[bucket.name] = current - cost
    for name, tokens in after.items():
        levels[name] = Level(tokens, now)
    return ALLOWED
