"""reranker_server: scores (query, document) pairs with cross-encoders over HTTP."""

__version__ = "0.1.0"
