"""Tokenization: (query, documents) -> token sequences, shared by every backend.

Uses the Rust ``tokenizers`` object directly so truncation is ours: the query is kept whole and
the document is cut (right or left) to what the model takes, and so batches can be tokenized in
worker threads while the event loop keeps serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from reranker_server.core.problems import TooManyTokens
from reranker_server.model.checkpoint import Checkpoint
from reranker_server.model.templates import Template

TruncationSide = Literal["right", "left"]


@dataclass(frozen=True)
class Chunking:
    """Long documents scored in windows of what the model takes, ``overlap`` tokens shared by
    neighbours, at most ``max_chunks`` of them (the rest of the document is not scored)."""

    overlap: int
    max_chunks: int

    def windows(self, encoding: Any, room: int) -> list[Any]:
        """``encoding`` cut into windows of ``room`` tokens (an Encoding keeps what a cut removed as
        its ``overflowing`` windows, each starting ``overlap`` tokens back)."""
        if len(encoding.ids) <= room:
            return [encoding]
        encoding.truncate(room, stride=min(self.overlap, room - 1))
        return [encoding, *encoding.overflowing][: self.max_chunks]


@dataclass(frozen=True)
class Sequence:
    """One model input: token ids and segment ids, unpadded."""

    ids: tuple[int, ...]
    type_ids: tuple[int, ...]
    # the batcher keys its queues by sequence several times over; tuples don't keep their hash
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.ids, self.type_ids)))

    def __hash__(self) -> int:
        return self._hash

    def __len__(self) -> int:
        return len(self.ids)


class Encoder:
    def __init__(self, checkpoint: Checkpoint) -> None:
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(str(checkpoint.path))
        self._tokenizer = hf.backend_tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.pad_id: int = hf.pad_token_id if hf.pad_token_id is not None else 0
        self.kind = checkpoint.kind
        self.max_length = checkpoint.max_length
        self._pair_specials = self._tokenizer.num_special_tokens_to_add(True)
        self._single_specials = self._tokenizer.num_special_tokens_to_add(False)
        # each made on first use (a large vocabulary's copy is tens of MiB), then never changed:
        # worker threads share them (per-call settings would race)
        self._pairs: dict[TruncationSide | None, Any] = {}
        self._pairs_lock = threading.Lock()

    def _pair_tokenizer(self, side: TruncationSide | None) -> Any:
        """A copy that encodes (query, document) pairs whole, cutting only the document (from
        ``side``; None: never) to the model's length: one call per request that holds no GIL,
        where a post_process per pair held it (the pipeline's largest cost on a near-free model)."""
        with self._pairs_lock:
            if side not in self._pairs:
                from tokenizers import Tokenizer

                copy = Tokenizer.from_str(self._tokenizer.to_str())
                copy.no_padding()
                if side is None:
                    copy.no_truncation()
                else:
                    copy.enable_truncation(self.max_length, strategy="only_second", direction=side)
                self._pairs[side] = copy
            return self._pairs[side]

    def encode_pairs(
        self,
        query: str,
        documents: list[str],
        *,
        truncate: bool = True,
        side: TruncationSide = "right",
        max_tokens_per_doc: int | None = None,
    ) -> list[Sequence]:
        """Cross-encoder inputs: one sequence per (query, document)."""
        query_enc = self._tokenizer.encode(query, add_special_tokens=False)
        budget = self.max_length - self._pair_specials - len(query_enc.ids)
        if budget < 1:
            raise TooManyTokens(None, len(query_enc.ids), self.max_length - self._pair_specials - 1)
        if max_tokens_per_doc is None or max_tokens_per_doc >= budget:
            return self._whole_pairs(query, documents, len(query_enc.ids), budget, side if truncate else None)
        budget = max_tokens_per_doc
        out: list[Sequence] = []
        for i, doc_enc in enumerate(self._tokenizer.encode_batch(documents, add_special_tokens=False)):
            if len(doc_enc.ids) > budget:
                if not truncate:
                    raise TooManyTokens(i, len(doc_enc.ids), budget)
                doc_enc.truncate(budget, direction=side)
            merged = self._tokenizer.post_process(query_enc, doc_enc, add_special_tokens=True)
            out.append(Sequence(tuple(merged.ids), tuple(merged.type_ids)))
        return out

    def _whole_pairs(
        self, query: str, documents: list[str], query_tokens: int, budget: int, side: TruncationSide | None
    ) -> list[Sequence]:
        pairs = [(query, doc) for doc in documents]
        encodings = self._pair_tokenizer(side).encode_batch(pairs, add_special_tokens=True)
        out: list[Sequence] = []
        for i, enc in enumerate(encodings):
            if side is None and len(enc.ids) > self.max_length:
                raise TooManyTokens(i, len(enc.ids) - query_tokens - self._pair_specials, budget)
            out.append(Sequence(tuple(enc.ids), tuple(enc.type_ids)))
        return out

    def encode_pair_chunks(
        self,
        query: str,
        documents: list[str],
        chunking: Chunking,
        *,
        side: TruncationSide = "right",
        max_tokens_per_doc: int | None = None,
    ) -> list[list[Sequence]]:
        """Cross-encoder inputs for long documents: one (query, window) sequence per window."""
        query_enc = self._tokenizer.encode(query, add_special_tokens=False)
        room = self.max_length - self._pair_specials - len(query_enc.ids)
        if room < 1:
            raise TooManyTokens(None, len(query_enc.ids), self.max_length - self._pair_specials - 1)
        out = []
        for doc_enc in self._tokenizer.encode_batch(documents, add_special_tokens=False):
            if max_tokens_per_doc is not None and len(doc_enc.ids) > max_tokens_per_doc:
                doc_enc.truncate(max_tokens_per_doc, direction=side)  # cut first, then chunked
            windows = [self._tokenizer.post_process(query_enc, w, add_special_tokens=True)
                       for w in chunking.windows(doc_enc, room)]  # fmt: skip
            out.append([Sequence(tuple(w.ids), tuple(w.type_ids)) for w in windows])
        return out

    def encode_template(
        self,
        template: Template,
        query: str,
        documents: list[str],
        instruction: str | None,
        *,
        truncate: bool = True,
        side: TruncationSide = "right",
        max_tokens_per_doc: int | None = None,
        chunking: Chunking | None = None,
    ) -> list[list[Sequence]]:
        """LLM reranker inputs: prefix + body + suffix, each tokenized alone as the model cards do.
        Only the document is cut; the prefix, the instruction, the query and the suffix never are.
        One sequence per document, or with ``chunking`` one per window of a long document."""
        prefix = self._tokenizer.encode(template.prefix, add_special_tokens=False).ids
        suffix = self._tokenizer.encode(template.tail(instruction), add_special_tokens=False).ids
        head = template.head(instruction, query)
        fixed = len(prefix) + len(suffix) + len(self._tokenizer.encode(head, add_special_tokens=False).ids)
        if fixed >= self.max_length:
            raise TooManyTokens(None, fixed, self.max_length - 1)
        bodies = [template.body.format(instruction=instruction or template.default_instruction, query=query,
                                       document=doc) for doc in documents]  # fmt: skip
        out: list[list[Sequence]] = []
        for i, enc in enumerate(self._tokenizer.encode_batch(bodies, add_special_tokens=False)):
            # the document's tokens: those reaching past the head (its first may carry the space before it)
            first = next((t for t, (_, end) in enumerate(enc.offsets) if end > len(head)), len(enc.ids))
            head_ids, doc_ids = enc.ids[:first], enc.ids[first:]
            room = max(1, self.max_length - len(prefix) - len(suffix) - len(head_ids))
            # chunked: only max_tokens_per_doc cuts (before the windows); else the model's room too
            budget = room if chunking is None else len(doc_ids)
            budget = budget if max_tokens_per_doc is None else min(budget, max_tokens_per_doc)
            if len(doc_ids) > budget:
                if not truncate and chunking is None:
                    raise TooManyTokens(i, len(doc_ids), budget)
                doc_ids = doc_ids[:budget] if side == "right" else doc_ids[len(doc_ids) - budget :]
            windows = [doc_ids]
            if chunking is not None and len(doc_ids) > room:  # as Chunking.windows cuts an Encoding
                overlap = min(chunking.overlap, room - 1)
                starts = range(0, len(doc_ids) - overlap, room - overlap)
                windows = [doc_ids[start : start + room] for start in starts][: chunking.max_chunks]
            sequences = [(*prefix, *head_ids, *w, *suffix) for w in windows]
            out.append([Sequence(tuple(ids), (0,) * len(ids)) for ids in sequences])
        return out

    def encode_texts(
        self,
        texts: list[str],
        *,
        truncate: bool = True,
        side: TruncationSide = "right",
        is_query: bool = False,
        chunking: Chunking | None = None,
    ) -> list[list[Sequence]]:
        """Bi-encoder inputs: one sequence per text, or with ``chunking`` one per window of a long one."""
        budget = self.max_length - self._single_specials
        out: list[list[Sequence]] = []
        for i, enc in enumerate(self._tokenizer.encode_batch(texts, add_special_tokens=False)):
            windows = [enc]
            if chunking is not None:
                windows = chunking.windows(enc, budget)
            elif len(enc.ids) > budget:
                if not truncate:
                    raise TooManyTokens(None if is_query else i, len(enc.ids), budget)
                enc.truncate(budget, direction=side)
            merged = [self._tokenizer.post_process(w, None, add_special_tokens=True) for w in windows]
            out.append([Sequence(tuple(m.ids), tuple(m.type_ids)) for m in merged])
        return out
