"""Layer 3, serving: what happens to a request between HTTP and the model. The runtime that owns
the long-lived parts, admission, score caches (in process and Redis), the batcher, rate limits."""
