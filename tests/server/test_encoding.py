from pathlib import Path

import pytest
from transformers import AutoTokenizer

from reranker_server.core.problems import TooManyTokens
from reranker_server.model.checkpoint import inspect
from reranker_server.model.encoding import Encoder

LONG_DOC = "the river flows into the sea and rain falls on the hills " * 80


@pytest.fixture(scope="module", params=["minilm", "xlmr"])
def model_dir(request: pytest.FixtureRequest, minilm_cross_dir: Path, xlmr_cross_dir: Path) -> Path:
    return minilm_cross_dir if request.param == "minilm" else xlmr_cross_dir


def test_pairs_match_the_hf_tokenizer_including_truncation(model_dir: Path) -> None:
    encoder = Encoder(inspect(str(model_dir), None))
    hf = AutoTokenizer.from_pretrained(str(model_dir))
    docs = ["a short document", LONG_DOC, ""]
    ours = encoder.encode_pairs("what flows into the sea", docs)
    for doc, sequence in zip(docs, ours, strict=True):
        # the batched call, as sentence-transformers makes it (a single call drops an empty pair)
        expected = hf(["what flows into the sea"], [doc], truncation="only_second", max_length=512)
        assert list(sequence.ids) == expected["input_ids"][0]
        assert list(sequence.type_ids) == expected.get("token_type_ids", [[0] * len(sequence)])[0]
    assert len(ours[1]) == 512  # XLM-R reports 514 positions but takes 512 tokens


def test_left_truncation_keeps_the_end_of_the_document(minilm_cross_dir: Path) -> None:
    encoder = Encoder(inspect(str(minilm_cross_dir), None))
    doc = LONG_DOC + " unmistakable ending"
    right, left = (encoder.encode_pairs("q", [doc], side=side)[0] for side in ("right", "left"))
    assert len(right) == len(left) == 512
    hf = AutoTokenizer.from_pretrained(str(minilm_cross_dir))
    assert hf.decode(list(left.ids)).endswith("unmistakable ending [SEP]")
    assert not hf.decode(list(right.ids)).endswith("unmistakable ending [SEP]")


def test_max_tokens_per_doc_and_refusing_to_truncate(minilm_cross_dir: Path) -> None:
    encoder = Encoder(inspect(str(minilm_cross_dir), None))
    capped = encoder.encode_pairs("q", [LONG_DOC], max_tokens_per_doc=10)[0]
    assert len(capped) == 1 + 1 + 1 + 10 + 1  # [CLS] q [SEP] doc [SEP]
    with pytest.raises(TooManyTokens) as too_long:
        encoder.encode_pairs("q", ["fine", LONG_DOC], truncate=False)
    assert too_long.value.index == 1
    with pytest.raises(TooManyTokens) as query_too_long:
        encoder.encode_pairs(LONG_DOC, ["doc"])
    assert query_too_long.value.index is None


def test_bi_encoder_texts_are_cut_to_max_seq_length(minilm_embed_dir: Path) -> None:
    checkpoint = inspect(str(minilm_embed_dir), None)
    assert checkpoint.kind == "bi-encoder"
    assert checkpoint.max_length == 256  # sentence_bert_config.json
    sequences = [s for [s] in Encoder(checkpoint).encode_texts(["short", LONG_DOC])]
    assert len(sequences[1]) == 256
    assert sequences[0].ids[0] == 101 and sequences[0].ids[-1] == 102


@pytest.mark.parametrize("side", ["right", "left"])
def test_whole_pairs_equal_each_document_cut_alone(model_dir: Path, side: str) -> None:
    """One encode_batch of (query, document) pairs, cutting only the document, gives what encoding
    the two alone, cutting the document to what is left and adding the special tokens gives."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    encoder = Encoder(inspect(str(model_dir), None))
    query, docs = "what flows into the sea", ["", "short", LONG_DOC, "the end " * 300]
    query_enc = tokenizer.encode(query, add_special_tokens=False)
    budget = encoder.max_length - tokenizer.num_special_tokens_to_add(True) - len(query_enc.ids)
    for doc, ours in zip(docs, encoder.encode_pairs(query, docs, side=side), strict=True):  # type: ignore[arg-type]
        doc_enc = tokenizer.encode(doc, add_special_tokens=False)
        if len(doc_enc.ids) > budget:
            doc_enc.truncate(budget, direction=side)
        merged = tokenizer.post_process(query_enc, doc_enc, add_special_tokens=True)
        assert (list(ours.ids), list(ours.type_ids)) == (merged.ids, merged.type_ids)
