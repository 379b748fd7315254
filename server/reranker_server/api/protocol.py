"""Request and response shapes: Cohere v1/v2 and Jina (``/v1/rerank``, ``/v2/rerank``) and TEI (``/rerank``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class DocumentObject(BaseModel):
    model_config = ConfigDict(extra="allow")
    text: str


class LongDocuments(BaseModel):
    """How a document longer than the model takes is scored; unset fields take the server's defaults."""

    long_documents: Literal["truncate", "chunk"] | None = Field(
        None,
        description="truncate: cut to the model's length; chunk: score it in windows of the model's length and "
        "pool their raw scores (each result then says how many windows its document took). Default: the server's "
        "LONG_DOCUMENTS.",
    )
    chunk_overlap: int | None = Field(None, ge=0, le=4096, description="Tokens neighbouring windows share.")
    chunk_pooling: Literal["max", "mean", "first"] | None = Field(
        None, description="max (the best window's score, exactly), mean or first, on the raw scores."
    )
    max_chunks_per_doc: int | None = Field(
        None, ge=1, le=10_000, description="Most windows scored per document; the rest of it is not scored."
    )


class RerankRequest(LongDocuments):
    """Cohere / Jina rerank request. Unknown fields (``rank_fields``) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(
        None, description="Accepted and echoed for client compatibility; the served model answers."
    )
    query: str = Field(..., description="The search query.")
    documents: list[str | DocumentObject] = Field(
        ..., min_length=1, description="Strings or objects with a `text` field; at least one."
    )
    top_n: int | None = Field(
        None,
        ge=1,
        description="Return only the best N results (default: all); a top_n above the number of documents "
        "returns all of them.",
    )
    return_documents: bool = Field(False, description="Include each document's text in its result.")
    max_tokens_per_doc: int | None = Field(
        None,
        ge=1,
        description="Cut each document to this many tokens (it is always cut to the model's maximum).",
    )
    instruction: str | None = Field(
        None,
        max_length=4096,
        description="Task instruction for LLM rerankers that take one (e.g. Qwen3-Reranker); other models "
        "ignore it (GET /info says whether the served model uses it).",
    )

    @field_validator("documents", mode="before")
    @classmethod
    def _documents_shape(cls, value: Any) -> Any:
        if not isinstance(value, list):
            raise ValueError("must be a list of strings or of objects with a 'text' field")
        for i, item in enumerate(value):
            if not isinstance(item, str) and not (isinstance(item, dict) and isinstance(item.get("text"), str)):
                raise ValueError(f"item {i} must be a string or an object with a string 'text' field")
        return value

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


class ResultDocument(BaseModel):
    text: str


class RerankResult(BaseModel):
    index: int
    relevance_score: float
    document: ResultDocument | None = None
    chunks: int | None = Field(None, description="Windows the document was scored in (when chunking).")


class Usage(BaseModel):
    total_tokens: int
    prompt_tokens: int


class RerankResponse(BaseModel):
    id: str
    model: str
    results: list[RerankResult]
    meta: dict[str, Any]
    usage: Usage


class TeiRerankRequest(LongDocuments):
    model_config = ConfigDict(extra="ignore")

    query: str
    texts: list[str] = Field(..., min_length=1, description="The documents to rank; at least one.")
    raw_scores: bool = Field(False, description="Return logits instead of sigmoid scores.")
    return_text: bool = False
    truncate: bool | None = Field(
        None, description="Cut inputs that are too long (default true); false answers 413 for them."
    )
    truncation_direction: Literal["right", "left"] = "right"
    instruction: str | None = Field(
        None,
        max_length=4096,
        description="Task instruction for LLM rerankers that take one (e.g. Qwen3-Reranker); other models "
        "ignore it (GET /info says whether the served model uses it).",
    )

    @field_validator("truncation_direction", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class TeiRank(BaseModel):
    index: int
    score: float
    text: str | None = None
    chunks: int | None = Field(None, description="Windows the document was scored in (when chunking).")
