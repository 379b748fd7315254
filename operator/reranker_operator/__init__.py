"""reranker_operator: reconciles ``Reranker`` resources into Deployments, Services and autoscalers.

Talks to the server only through its HTTP API and to users only through the CRDs: it never
imports ``reranker_server``.
"""

__version__ = "0.1.0"
