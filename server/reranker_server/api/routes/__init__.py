"""Part of the api layer: the routes, HTTP only (``rerank`` and ``ops``)."""
