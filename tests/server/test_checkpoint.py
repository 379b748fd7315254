import json
from pathlib import Path

import pytest

from reranker_server.model.checkpoint import EMBEDDED_MODEL_ID, CheckpointError, inspect


def test_cross_encoders_are_recognised(minilm_cross_dir: Path, xlmr_cross_dir: Path) -> None:
    minilm = inspect(str(minilm_cross_dir), None)
    assert (minilm.kind, minilm.num_labels, minilm.max_length) == ("cross-encoder", 1, 512)
    xlmr = inspect(str(xlmr_cross_dir), None)
    assert (xlmr.kind, xlmr.model_type, xlmr.max_length) == ("cross-encoder", "xlm-roberta", 512)
    assert inspect(str(xlmr_cross_dir), None, max_input_length=128).max_length == 128


def test_unset_model_name_is_the_embedded_bi_encoder() -> None:
    checkpoint = inspect(None, None)
    assert checkpoint.model_id == EMBEDDED_MODEL_ID
    assert checkpoint.source.startswith("embedded:")
    assert (checkpoint.kind, checkpoint.pooling) == ("bi-encoder", "mean")


def test_bad_model_names_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        inspect(str(tmp_path / "missing"), None)
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        inspect(str(tmp_path), None)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForTokenClassification"]}))
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(CheckpointError, match="neither a sequence classifier"):
        inspect(str(tmp_path), None)
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["BertForSequenceClassification"], "id2label": {"0": "a", "1": "b", "2": "c"}})
    )
    with pytest.raises(CheckpointError, match="1 or 2 labels"):
        inspect(str(tmp_path), None)
