from reranker_server.serving.cache import CachedScore, ScoreCache, score_key


def test_keys_separate_every_component() -> None:
    base = score_key("m|r|512", "v", "query", "doc")
    assert base == score_key("m|r|512", "v", "query", "doc")
    assert len(base) == 16
    assert base != score_key("m|r2|512", "v", "query", "doc")
    assert base != score_key("m|r|512", "v2", "query", "doc")
    # moving text between query and document must not collide
    assert score_key("m", "v", "ab", "c") != score_key("m", "v", "a", "bc")


def test_lru_evicts_least_recently_used() -> None:
    cache = ScoreCache(capacity=2)
    a, b, c = (score_key("m", "v", "q", d) for d in "abc")
    cache.put_many([(a, CachedScore(1.0, 3)), (b, CachedScore(2.0, 3))])
    assert cache.get_many([a]) == [CachedScore(1.0, 3)]  # a is now the most recent
    cache.put_many([(c, CachedScore(3.0, 3))])
    assert cache.get_many([a, b, c]) == [CachedScore(1.0, 3), None, CachedScore(3.0, 3)]
    assert len(cache) == 2


def test_zero_capacity_disables() -> None:
    cache = ScoreCache(capacity=0)
    key = score_key("m", "v", "q", "d")
    cache.put_many([(key, CachedScore(1.0, 1))])
    assert not cache.enabled
    assert cache.get_many([key]) == [None]
