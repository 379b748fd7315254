"""LLM rerankers (Qwen3-Reranker family) against the model card's formula, computed here with
transformers on a tiny random Qwen3ForCausalLM: sigmoid(logit("yes") - logit("no")) at the last
position of prefix + body + suffix, one pair at a time, float32."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reranker_server.backends import pad
from reranker_server.model.checkpoint import inspect
from reranker_server.model.tasks import ScoreOptions
from reranker_server.model.templates import QWEN3
from tests.scores import assert_scores_close

QUERY = "what is the capital of france"
DOCS = [
    "Paris is the capital of France.",
    "The cat sat on the mat while the dog slept by the fire.",
    "Berlin is the capital of Germany and Paris is the capital of France, a river flows into the sea.",
    "no",
]
INSTRUCTION = "Given a question, find the passage that states the answer"


@pytest.fixture(scope="module")
def reference(qwen3_reranker_dir: Path) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(qwen3_reranker_dir))
    model = AutoModelForCausalLM.from_pretrained(str(qwen3_reranker_dir), dtype=torch.float32).eval()
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(QWEN3.prefix, add_special_tokens=False)
    suffix = tokenizer.encode(QWEN3.suffix, add_special_tokens=False)

    def body_ids(query: str, document: str, instruction: str | None) -> list[int]:
        body = f"<Instruct>: {instruction or QWEN3.default_instruction}\n<Query>: {query}\n<Document>: {document}"
        ids: list[int] = tokenizer.encode(body, add_special_tokens=False)
        return ids

    def logit(body: list[int]) -> float:
        with torch.no_grad():
            logits = model(torch.tensor([prefix + body + suffix])).logits[0, -1]
        return float(logits[yes] - logits[no])

    def score(body: list[int]) -> float:
        return float(torch.sigmoid(torch.tensor(logit(body), dtype=torch.float64)))

    return body_ids, score, prefix, suffix, logit


def test_a_qwen3_reranker_is_recognised_from_its_config_and_tokenizer(qwen3_reranker_dir: Path) -> None:
    checkpoint = inspect(str(qwen3_reranker_dir), None)
    assert (checkpoint.kind, checkpoint.template, checkpoint.max_length) == ("llm-yes-no", "qwen3", 160)
    vocab = json.loads((qwen3_reranker_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert checkpoint.answer_ids == (vocab["yes"], vocab["no"])


@pytest.mark.scores
@pytest.mark.parametrize("instruction", [None, INSTRUCTION])
def test_scores_equal_the_formula_one_pair_at_a_time(qwen3_model: Any, reference: Any, instruction: str | None) -> None:
    body_ids, score, *_ = reference
    task = qwen3_model.task
    encoded = task.encode(QUERY, DOCS, ScoreOptions(instruction=instruction))
    rows = qwen3_model.backend.forward(pad(encoded.sequences, qwen3_model.encoder.pad_id))  # mixed lengths, one batch
    ours = task.finalize(task.raw(rows), False)
    expected = [score(body_ids(QUERY, doc, instruction)) for doc in DOCS]
    assert_scores_close(ours, expected)
    assert len({round(float(s), 4) for s in ours}) > 1  # the tiny model's scores do spread


def test_the_instruction_changes_the_scores(qwen3_model: Any) -> None:
    plain = qwen3_model.task.encode(QUERY, DOCS[:1], ScoreOptions())
    instructed = qwen3_model.task.encode(QUERY, DOCS[:1], ScoreOptions(instruction=INSTRUCTION))
    assert plain.sequences != instructed.sequences
    assert ScoreOptions(instruction="a").variant(True) != ScoreOptions(instruction="b").variant(True)


@pytest.mark.scores
@pytest.mark.parametrize("side", ["right", "left"])
def test_a_long_document_is_cut_alone_and_the_suffix_stays(qwen3_model: Any, reference: Any, side: str) -> None:
    body_ids, score, prefix, suffix, _ = reference
    long_doc = " ".join(["the river flows into the sea and rain falls on the hills"] * 40)
    [sequence] = qwen3_model.task.encode(QUERY, [long_doc], ScoreOptions(side=side)).sequences  # type: ignore[arg-type]
    assert len(sequence) == 160 and list(sequence.ids[-len(suffix) :]) == suffix
    full = body_ids(QUERY, long_doc, None)
    head = len(body_ids(QUERY, "", None)) - 1  # "<Document>: " without its trailing space, which joins the document
    budget = 160 - len(prefix) - len(suffix)
    cut = full[:budget] if side == "right" else full[:head] + full[len(full) - (budget - head) :]
    assert list(sequence.ids) == prefix + cut + suffix
    rows = qwen3_model.backend.forward(pad([sequence], qwen3_model.encoder.pad_id))
    ours = qwen3_model.task.finalize(qwen3_model.task.raw(rows), False)
    assert_scores_close(ours, [score(cut)])


@pytest.mark.scores
def test_the_served_model_over_http(qwen3_reranker_dir: Path, reference: Any, start_server: Any) -> None:
    body_ids, score, _, _, logit = reference
    server = start_server({"MODEL_NAME": str(qwen3_reranker_dir)})
    info = httpx.get(f"{server.url}/info").json()
    assert (info["model_kind"], info["template"], info["uses_instruction"]) == ("llm-yes-no", "qwen3", True)
    assert httpx.get(f"{server.url}/health").json()["model"]["template"] == "qwen3"
    for route, body in (("/v1/rerank", {"documents": DOCS}), ("/v2/rerank", {"documents": DOCS}),
                        ("/rerank", {"texts": DOCS})):  # fmt: skip
        response = httpx.post(f"{server.url}{route}", json={"query": QUERY, "instruction": INSTRUCTION, **body})
        assert response.status_code == 200, response.text
        results = response.json() if route == "/rerank" else response.json()["results"]
        got = {r["index"]: r.get("relevance_score", r.get("score")) for r in results}
        expected = [score(body_ids(QUERY, doc, INSTRUCTION)) for doc in DOCS]
        assert_scores_close([got[i] for i in range(len(DOCS))], expected)
    raw = httpx.post(f"{server.url}/rerank", json={"query": QUERY, "texts": DOCS[:1], "raw_scores": True}).json()
    # the logit difference itself, compared as a logit (a sigmoid near 1 keeps few of its digits)
    assert_scores_close([raw[0]["score"]], [logit(body_ids(QUERY, DOCS[0], None))], what="raw logits")

    too_long = httpx.post(f"{server.url}/v1/rerank", json={"query": "capital " * 200, "documents": DOCS[:1]})
    assert too_long.status_code == 413 and "query" in too_long.text


def test_models_without_instructions_ignore_it(minilm_cross_model: Any) -> None:
    task = minilm_cross_model.task
    assert not task.uses_instruction
    plain = task.encode(QUERY, DOCS, ScoreOptions())
    instructed = task.encode(QUERY, DOCS, ScoreOptions(instruction=INSTRUCTION))
    assert plain == instructed
    assert ScoreOptions(instruction="a").variant(False) == ScoreOptions().variant(False)  # same cache entries
