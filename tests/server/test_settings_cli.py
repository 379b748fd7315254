import pytest

from reranker_server.__main__ import build_parser
from reranker_server.core.settings import Settings

PREDECESSOR_NAMES = [
    "PORT", "HOST", "MAX_PARALLEL_REQUESTS", "MAX_QUEUE_SIZE", "BATCH_SIZE", "USE_MLX", "DEVICE_PREFERENCE",
    "WORKER_TIMEOUT", "MAX_RETRIES", "ENABLE_DISTRIBUTED", "MODEL_NAME", "MODEL_REVISION", "DTYPE",
    "MAX_BATCH_TOKENS", "CACHE_SIZE", "REDIS_URL",
]  # fmt: skip


def test_environment_variables_configure_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9001")
    monkeypatch.setenv("BATCH_SIZE", "8")
    monkeypatch.setenv("DEVICE_PREFERENCE", "cpu")
    monkeypatch.setenv("ENABLE_DISTRIBUTED", "true")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    settings = Settings()
    assert (settings.port, settings.batch_size, settings.device_preference) == (9001, 8, "cpu")
    assert settings.enable_distributed is True and settings.redis_url == "redis://redis:6379/0"
    monkeypatch.delenv("REDIS_URL")
    with pytest.raises(ValueError, match="ENABLE_DISTRIBUTED needs REDIS_URL"):
        Settings()


def test_flags_mirror_every_variable_and_win(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = build_parser()
    help_text = " ".join(parser.format_help().split())  # argparse wraps lines
    for name in PREDECESSOR_NAMES:
        assert f"env {name};" in help_text
        assert f"--{name.lower().replace('_', '-')}" in help_text
    monkeypatch.setenv("BATCH_SIZE", "8")
    overrides = vars(parser.parse_args(["--batch-size", "4", "--dtype", "float32", "--enable-distributed", "false"]))
    settings = Settings(**overrides)
    assert (settings.batch_size, settings.dtype, settings.enable_distributed) == (4, "float32", False)


def test_registration_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--register", "--reranker", "minilm", "--namespace", "search", "--advertise-address", "10.0.0.5:8000"]
    settings = Settings(**vars(build_parser().parse_args(args)))
    assert settings.register_endpoint and settings.reranker == "minilm" and settings.namespace == "search"
    monkeypatch.setenv("REGISTER", "true")
    with pytest.raises(ValueError, match="--register needs --reranker"):
        Settings()


def test_bad_values_are_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--dtype", "float8"])
    with pytest.raises(ValueError, match="batch_size"):
        Settings(batch_size=0)
