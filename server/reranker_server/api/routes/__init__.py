"""HTTP routers: ``rerank`` (the scoring API) and ``ops`` (health, readiness, info, metrics)."""
