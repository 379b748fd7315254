"""API processes apart from the engine (``API_PROCESSES`` > 1): the engine process owns the model,
the batcher, admission and the score cache; API processes (HTTP, JSON, tokenization) reach it
over a Unix socket (``host`` serves it, ``client`` and ``remote`` are the API side)."""
