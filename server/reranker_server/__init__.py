"""reranker_server: scores (query, document) pairs with cross-encoders and LLM rerankers over HTTP.

Layers, each importing only those below it (the import-linter ``layers`` contract in
pyproject.toml): ``cli`` -> ``api`` -> ``serving`` -> ``loading`` -> ``backends`` -> ``model``
-> ``core``.
"""

__version__ = "0.1.0"
