"""Model output rows -> relevance scores (pure numpy)."""

from __future__ import annotations

import numpy as np


def cross_encoder_raw(logits: np.ndarray) -> np.ndarray:
    """One label: the logit. Two labels: the positive class's log-odds, so sigmoid gives its softmax."""
    raw = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    return np.asarray(raw, dtype=np.float64)


def cosine(query: np.ndarray, documents: np.ndarray) -> np.ndarray:
    q = query.astype(np.float64)
    d = documents.astype(np.float64)
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    return np.asarray(d @ q, dtype=np.float64)


def sigmoid(raw: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-raw)), dtype=np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation, for checking that a reduced dtype orders documents like float32."""
    ranks_a = np.argsort(np.argsort(a)).astype(np.float64)
    ranks_b = np.argsort(np.argsort(b)).astype(np.float64)
    ranks_a -= ranks_a.mean()
    ranks_b -= ranks_b.mean()
    denom = float(np.sqrt((ranks_a**2).sum() * (ranks_b**2).sum()))
    return float((ranks_a * ranks_b).sum() / denom) if denom else 1.0


def pool_chunks(raw: np.ndarray, chunks: list[int], how: str) -> np.ndarray:
    """One raw score per document from its chunks' raw scores (consecutive in ``raw``), before the
    final transform: ``max`` (the best chunk's, exactly), ``mean``, or ``first``."""
    pooled, start = [], 0
    for count in chunks:
        part = raw[start : start + count]
        start += count
        pooled.append(part.max() if how == "max" else part.mean() if how == "mean" else part[0])
    return np.asarray(pooled, dtype=np.float64)
