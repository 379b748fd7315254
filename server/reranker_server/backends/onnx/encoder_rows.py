"""An encoder checkpoint as one torch module: token batch in, output rows out.

Cross-encoders give their logits, bi-encoders their pooled embedding. The torch backend runs it;
the ONNX Runtime backend exports it, so pooling happens inside the exported graph too.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModel, AutoModelForSequenceClassification

from reranker_server.model.checkpoint import ENCODER_KINDS, Checkpoint


class EncoderRows(torch.nn.Module):
    def __init__(self, checkpoint: Checkpoint, attention: str | None = None) -> None:
        """``attention``: transformers' attn_implementation (its default, sdpa, unless given)."""
        super().__init__()
        if checkpoint.kind not in ENCODER_KINDS:
            raise ValueError(f"{checkpoint.kind} is not an encoder checkpoint")
        loader: Any = AutoModelForSequenceClassification if checkpoint.kind == "cross-encoder" else AutoModel
        chosen = {"attn_implementation": attention} if attention else {}
        self.model = loader.from_pretrained(str(checkpoint.path), dtype=torch.float32, **chosen).eval()
        self.cross_encoder = checkpoint.kind == "cross-encoder"
        self.cls_pooling = checkpoint.pooling == "cls"
        self.uses_token_types = checkpoint.config.get("type_vocab_size", 0) > 1

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if self.uses_token_types else {}
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self.cross_encoder:
            logits: torch.Tensor = output.logits
            return logits.float()
        hidden: torch.Tensor = output.last_hidden_state
        if self.cls_pooling:
            return hidden[:, 0].float()
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)).float()
