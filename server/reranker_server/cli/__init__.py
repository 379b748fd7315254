"""Layer 1, cli: the ``reranker-server`` command (serve, and ``download`` to fill a model cache)."""
