"""Prompt templates of LLM rerankers scored by the logits of answer tokens ("yes"/"no").

One declarative entry per family, so another family is a table row, not code:
``prefix + body.format(instruction, query, document) + suffix`` is the model's input, and the
score reads the next-token logits at the last position: ``logit(positive) - logit(negative)``
(sigmoid of it: the probability of "yes" against "no"), or ``logit(positive)`` alone where the
family has no negative token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Template:
    name: str
    prefix: str
    body: str  # with {instruction}, {query}, {document}; the document comes last (truncation cuts it)
    suffix: str
    positive: str  # answer token whose logit is the score
    negative: str | None  # subtracted when set
    default_instruction: str

    def tail(self, instruction: str | None) -> str:
        """The suffix (bge-gemma puts its instruction there)."""
        return self.suffix.replace("{instruction}", instruction or self.default_instruction)

    def head(self, instruction: str | None, query: str) -> str:
        """The body up to the document."""
        before = self.body.split("{document}", 1)[0]
        return before.format(instruction=instruction or self.default_instruction, query=query)


# Qwen3-Reranker model card (0.6B/4B/8B): the chat template with an empty think block.
QWEN3 = Template(
    name="qwen3",
    prefix=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
        'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
    ),
    body="<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
    suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    positive="yes",
    negative="no",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
)

# bge-reranker-v2-gemma (FlagEmbedding's LLM reranker): "A: query\nB: passage\nprompt", the raw
# logit of "Yes".
BGE_GEMMA = Template(
    name="bge-gemma",
    prefix="<bos>",
    body="A: {query}\nB: {document}",
    suffix="\n{instruction}",
    positive="Yes",
    negative=None,
    default_instruction=(
        "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
        "providing a prediction of either 'Yes' or 'No'."
    ),
)

TEMPLATES: dict[str, Template] = {t.name: t for t in (QWEN3, BGE_GEMMA)}


def detect(config: dict[str, Any], vocabulary: set[str]) -> Template | None:
    """``RERANKER_TEMPLATE=auto``: a causal LM of a known family whose tokenizer has the answer tokens."""
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForCausalLM") for a in architectures):
        return None
    family = {"qwen3": QWEN3, "gemma": BGE_GEMMA, "gemma2": BGE_GEMMA}.get(str(config.get("model_type")))
    if family is None:
        return None
    needed = {family.positive} | ({family.negative} if family.negative else set())
    return family if needed <= vocabulary else None
