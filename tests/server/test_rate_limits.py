"""Rate limits as pure functions: the token bucket, a key's own limits, the fleet share, the key file."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from reranker_server.api.auth import ApiKey, parse_keys
from reranker_server.serving.fleet_size import FleetSize
from reranker_server.serving.rate_limits import PAIRS, REQUESTS, Bucket, Level, Limits, parse_limits, take


def test_a_burst_passes_then_the_next_request_waits_exactly_for_its_token() -> None:
    bucket = Bucket(REQUESTS, rate=2.0, capacity=3.0)
    levels: dict[str, Level] = {}
    assert [take(levels, ((bucket, 1.0),), now=10.0).allowed for _ in range(3)] == [True, True, True]
    refused = take(levels, ((bucket, 1.0),), now=10.0)
    assert not refused.allowed and refused.limit == REQUESTS and refused.retry_after == pytest.approx(0.5)
    assert take(levels, ((bucket, 1.0),), now=10.25).retry_after == pytest.approx(0.25)
    assert take(levels, ((bucket, 1.0),), now=10.5).allowed
    # refill stops at the burst, however long the key was idle
    assert [take(levels, ((bucket, 1.0),), now=1000.0).allowed for _ in range(4)] == [True, True, True, False]


def test_a_request_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_it_in_debt() -> None:
    pairs = Bucket(PAIRS, rate=100.0, capacity=50.0)
    levels: dict[str, Level] = {}
    assert take(levels, ((pairs, 200.0),), now=0.0).allowed  # never refused for good
    assert levels[PAIRS].tokens == -150.0
    refused = take(levels, ((pairs, 10.0),), now=0.0)
    assert refused.retry_after == pytest.approx(1.6)  # the debt, then 10 tokens, at 100/s
    assert take(levels, ((pairs, 10.0),), now=1.6).allowed


def test_every_bucket_is_checked_before_any_is_taken_from() -> None:
    requests, pairs = Bucket(REQUESTS, 10.0, 10.0), Bucket(PAIRS, 10.0, 10.0)
    levels: dict[str, Level] = {}
    assert take(levels, ((requests, 1.0), (pairs, 8.0)), now=0.0).allowed
    refused = take(levels, ((requests, 1.0), (pairs, 8.0)), now=0.0)
    assert refused.limit == PAIRS
    assert levels[REQUESTS].tokens == 9.0  # the refused request cost nothing


def test_a_keys_own_limits_win_field_by_field_and_unlimited_lifts_a_default() -> None:
    defaults = Limits(requests_per_second=5, pairs_per_second=500)
    own = parse_limits(["pairs_per_second=2000", "pair_burst=4000", "requests_per_second=unlimited"])
    merged = defaults.overridden_by(own)
    assert merged.buckets() == (Bucket(PAIRS, 2000.0, 4000.0),)
    assert defaults.buckets() == (Bucket(REQUESTS, 5.0, 5.0), Bucket(PAIRS, 500.0, 500.0))  # burst: one second
    assert Limits().buckets() == ()


@pytest.mark.parametrize(
    ("option", "message"),
    [("requests_per_second=-1", "requests_per_second: must be a positive"), ("pair_burst=lots", "not a number"),
     ("tokens_per_second=5", "expected one of"), ("requests_per_second", "expected one of")],
)  # fmt: skip
def test_bad_limits_are_named(option: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_limits([option])


def test_each_server_enforces_its_share_of_the_fleet() -> None:
    assert Bucket(PAIRS, 300.0, 600.0).share(3) == Bucket(PAIRS, 100.0, 200.0)
    assert Bucket(PAIRS, 300.0, 600.0).share(0) == Bucket(PAIRS, 300.0, 600.0)


def test_the_key_file_gives_keys_their_own_limits_and_a_bad_option_falls_back_to_the_defaults(
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = "# team keys\nsk-a requests_per_second=2 pair_burst=100\n\nsk-b\nsk-c pairs_per_second=fast\n"
    keys = parse_keys(text)
    assert keys == (
        ApiKey(b"sk-a", Limits(requests_per_second=2.0, pair_burst=100.0)),
        ApiKey(b"sk-b"),
        ApiKey(b"sk-c"),
    )
    assert "line 5" in caplog.text and "pairs_per_second" in caplog.text and "sk-c" not in caplog.text
    assert parse_keys("k1, k2", ",") == (ApiKey(b"k1"), ApiKey(b"k2"))


def test_the_fleet_size_follows_its_file_and_keeps_the_last_good_value(tmp_path: Path) -> None:
    path = tmp_path / "size"
    fleet = FleetSize(2, path)
    assert fleet.get() == 2  # no file yet: the ConfigMap is optional
    path.write_text("5\n")
    fleet._checked = -math.inf
    assert fleet.get() == 5
    path.write_text("many")
    fleet._checked = -math.inf
    assert fleet.get() == 5
    fleet.set(0)
    assert fleet.get() == 1  # never divides by zero


def test_each_api_process_enforces_its_part_of_the_servers_share() -> None:
    import asyncio

    from reranker_server.serving.rate_limiter import RateLimiter

    # 2 servers x 2 API processes without Redis: 8 requests/s over the fleet is 2 per process
    limiter = RateLimiter(Limits(requests_per_second=8.0), FleetSize(2, None), scope="t", processes=2)

    async def admitted() -> list[bool]:
        return [(await limiter.admit(b"k", None, 1)).allowed for _ in range(3)]

    assert asyncio.run(admitted()) == [True, True, False]
