"""The client lives in ``reranker_client``; this path keeps ``from reranker_server.client import RerankerClient``."""

from reranker_client.client import AsyncRerankerClient, RankedDocument, RerankerClient, RerankError, retry_delay

__all__ = ["AsyncRerankerClient", "RankedDocument", "RerankError", "RerankerClient", "retry_delay"]
