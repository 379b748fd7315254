"""Test checkpoints build deterministically: the same bytes on every run."""

from pathlib import Path

import pytest

from tests import model_fixtures


@pytest.mark.slow
def test_rebuilding_gives_identical_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = {"minilm": model_fixtures.minilm_cross_dir(), "xlmr": model_fixtures.xlmr_cross_dir()}
    monkeypatch.setenv("RERANKER_TEST_MODELS", str(tmp_path))
    rebuilt = {"minilm": model_fixtures.minilm_cross_dir(), "xlmr": model_fixtures.xlmr_cross_dir()}
    for name in shared:
        assert rebuilt[name].parent == tmp_path
        assert model_fixtures.digest(rebuilt[name]) == model_fixtures.digest(shared[name]), name
