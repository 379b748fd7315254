"""The ``reranker.dev`` API: group, version and the two kinds."""

from __future__ import annotations

GROUP = "reranker.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

RERANKER_KIND = "Reranker"
RERANKER_PLURAL = "rerankers"
ENDPOINT_KIND = "RerankerEndpoint"
ENDPOINT_PLURAL = "rerankerendpoints"
