"""reranker_client: what callers of a reranker-server use, apart from the server (it imports nothing
of it): ``RerankerClient``/``AsyncRerankerClient`` and the ``reranker-bench`` load tester."""

from reranker_client.client import AsyncRerankerClient, RerankerClient, RerankError

__all__ = ["AsyncRerankerClient", "RerankError", "RerankerClient"]
