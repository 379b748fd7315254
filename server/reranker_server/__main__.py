"""``python -m reranker_server``: the ``reranker-server`` command (``cli.serve``)."""

from reranker_server.cli.serve import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    main()
