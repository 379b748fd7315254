"""MLX backend: BERT, RoBERTa and XLM-RoBERTa rerankers natively on Apple silicon.

Loads the Hugging Face ``model.safetensors`` directly (no conversion step): the modules below
use Hugging Face's attribute names, so checkpoint keys map onto parameters one to one.

Why our own ~200 lines rather than ``mlx-transformers`` (Apache-2.0, has these heads): its
0.3.0 release pins ``mlx<0.33`` and ``transformers<6`` and ships ~80 KB of model code for three
architectures we implement here in one encoder with two heads. Those pins would hold back the
whole serving image (the torch backend's transformers included) every time MLX releases, to
save us an encoder whose parity with PyTorch is pinned by our own tests (1e-4 in float32).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten

from reranker_server.backends import Backend, PaddedBatch
from reranker_server.model.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

_ROBERTA_FAMILY = {"roberta", "xlm-roberta", "camembert"}
_SUPPORTED = {"bert", *_ROBERTA_FAMILY}
_MX_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


def _activation(name: str) -> Callable[[mx.array], mx.array]:
    if name in ("gelu", "gelu_python"):
        return nn.gelu  # exact (erf) GELU, as transformers' "gelu"
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return nn.gelu_approx
    if name == "relu":
        return nn.relu
    raise ValueError(f"MLX backend: unsupported hidden_act {name!r}")


class Embeddings(nn.Module):
    def __init__(self, cfg: dict[str, Any], roberta_positions: bool) -> None:
        super().__init__()
        hidden = cfg["hidden_size"]
        self.word_embeddings = nn.Embedding(cfg["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(cfg["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(max(1, cfg.get("type_vocab_size", 2)), hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=cfg.get("layer_norm_eps", 1e-12))
        self._roberta_positions = roberta_positions
        self._pad = int(cfg.get("pad_token_id", 0) or 0)

    def __call__(self, ids: mx.array, types: mx.array, mask: mx.array) -> mx.array:
        if self._roberta_positions:
            # RoBERTa numbers real tokens from padding_idx + 1 and gives pads padding_idx.
            positions = mx.cumsum(mask, axis=1) * mask + self._pad
        else:
            positions = mx.broadcast_to(mx.arange(ids.shape[1])[None, :], ids.shape)
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings(types)
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self._heads = heads

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        b, t, h = x.shape
        d = h // self._heads

        def split(y: mx.array) -> mx.array:
            return y.reshape(b, t, self._heads, d).transpose(0, 2, 1, 3)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = (q @ k.transpose(0, 1, 3, 2)) * (d**-0.5) + bias
        weights = mx.softmax(scores.astype(mx.float32), axis=-1).astype(v.dtype)
        return (weights @ v).transpose(0, 2, 1, 3).reshape(b, t, h)


class DenseNorm(nn.Module):
    """dense -> dropout (no-op) -> LayerNorm(x + residual): HF's SelfOutput and Output."""

    def __init__(self, n_in: int, n_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, eps: float) -> None:
        super().__init__()
        self.self = SelfAttention(hidden, heads)
        self.output = DenseNorm(hidden, hidden, eps)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        return self.output(self.self(x, bias), x)


class Intermediate(nn.Module):
    def __init__(self, hidden: int, inner: int, act: Callable[[mx.array], mx.array]) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, inner)
        self._act = act

    def __call__(self, x: mx.array) -> mx.array:
        return self._act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
        self.attention = Attention(hidden, cfg["num_attention_heads"], eps)
        self.intermediate = Intermediate(hidden, cfg["intermediate_size"], _activation(cfg.get("hidden_act", "gelu")))
        self.output = DenseNorm(cfg["intermediate_size"], hidden, eps)

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        attended = self.attention(x, bias)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.layer = [Layer(cfg) for _ in range(cfg["num_hidden_layers"])]

    def __call__(self, x: mx.array, bias: mx.array) -> mx.array:
        for layer in self.layer:
            x = layer(x, bias)
        return x


class Pooler(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)

    def __call__(self, hidden_states: mx.array) -> mx.array:
        return mx.tanh(self.dense(hidden_states[:, 0]))


class TransformerModel(nn.Module):
    """BertModel / RobertaModel / XLMRobertaModel."""

    def __init__(self, cfg: dict[str, Any], with_pooler: bool) -> None:
        super().__init__()
        self.embeddings = Embeddings(cfg, cfg.get("model_type") in _ROBERTA_FAMILY)
        self.encoder = Encoder(cfg)
        if with_pooler:
            self.pooler = Pooler(cfg["hidden_size"])

    def __call__(self, ids: mx.array, types: mx.array, mask: mx.array) -> mx.array:
        bias = ((1 - mask.astype(mx.float32)) * -1e9)[:, None, None, :]
        x = self.embeddings(ids, types, mask)
        return self.encoder(x, bias.astype(x.dtype))


class RobertaHead(nn.Module):
    """RoBERTa's classification head: <s> token -> dense -> tanh -> out_proj."""

    def __init__(self, hidden: int, labels: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.out_proj = nn.Linear(hidden, labels)

    def __call__(self, hidden_states: mx.array) -> mx.array:
        return self.out_proj(mx.tanh(self.dense(hidden_states[:, 0])))


class BertForSequenceClassification(nn.Module):
    def __init__(self, cfg: dict[str, Any], labels: int) -> None:
        super().__init__()
        self.bert = TransformerModel(cfg, with_pooler=True)
        self.classifier = nn.Linear(cfg["hidden_size"], labels)

    def __call__(self, ids: mx.array, types: mx.array, mask: mx.array) -> mx.array:
        return self.classifier(self.bert.pooler(self.bert(ids, types, mask)))


class RobertaForSequenceClassification(nn.Module):
    def __init__(self, cfg: dict[str, Any], labels: int) -> None:
        super().__init__()
        self.roberta = TransformerModel(cfg, with_pooler=False)
        self.classifier = RobertaHead(cfg["hidden_size"], labels)

    def __call__(self, ids: mx.array, types: mx.array, mask: mx.array) -> mx.array:
        return self.classifier(self.roberta(ids, types, mask))


def build(checkpoint: Checkpoint) -> nn.Module:
    cfg = checkpoint.config
    model_type = cfg.get("model_type")
    if model_type not in _SUPPORTED:
        raise ValueError(f"MLX backend supports {sorted(_SUPPORTED)}, not {model_type!r}")
    if checkpoint.kind == "bi-encoder":
        return TransformerModel(cfg, with_pooler=False)
    if model_type in _ROBERTA_FAMILY:
        return RobertaForSequenceClassification(cfg, checkpoint.num_labels)
    return BertForSequenceClassification(cfg, checkpoint.num_labels)


def load_weights(model: nn.Module, checkpoint: Checkpoint) -> None:
    files = sorted(checkpoint.path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"MLX backend needs safetensors weights in {checkpoint.path}")
    weights: dict[str, mx.array] = {}
    for file in files:
        loaded: dict[str, mx.array] = mx.load(str(file))  # type: ignore[assignment]  # .safetensors -> dict
        weights.update(loaded)
    wanted = {name for name, _ in tree_flatten(model.parameters())}
    if checkpoint.kind == "bi-encoder":  # some exports prefix the bare model's keys
        prefix = f"{checkpoint.model_type.replace('-', '_')}."
        weights = {k.removeprefix(prefix).removeprefix("bert."): v for k, v in weights.items()}
    missing = wanted - set(weights)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} weights, e.g. {sorted(missing)[:3]}")
    model.load_weights([(k, v) for k, v in weights.items() if k in wanted])


def quantize_linear(model: nn.Module, bits: int) -> None:
    """Quantize the linear layers whose input width a group size divides."""

    def predicate(_path: str, module: nn.Module) -> bool | dict[str, int]:
        if not isinstance(module, nn.Linear):
            return False
        width = module.weight.shape[-1]
        for group_size in (64, 32):
            if width % group_size == 0:
                return {"group_size": group_size, "bits": bits}
        return False

    nn.quantize(model, bits=bits, class_predicate=predicate)


class MlxBackend(Backend):
    name = "mlx"
    device = "mlx"

    def __init__(self, checkpoint: Checkpoint, dtype: str = "float32", quantize_bits: int = 0) -> None:
        self._kind = checkpoint.kind
        self._pooling = checkpoint.pooling
        self._model = build(checkpoint)
        load_weights(self._model, checkpoint)
        self._model.set_dtype(_MX_DTYPES[dtype])
        if quantize_bits:
            quantize_linear(self._model, quantize_bits)
        self._model.eval()
        mx.eval(self._model.parameters())
        self.dtype = dtype if not quantize_bits else f"{dtype}+q{quantize_bits}"
        self.device = f"mlx:{mx.default_device()}"

    def forward(self, batch: PaddedBatch) -> np.ndarray:
        ids = mx.array(batch.input_ids.astype(np.int32))
        mask = mx.array(batch.attention_mask.astype(np.int32))
        types = mx.array(batch.token_type_ids.astype(np.int32))
        out = self._model(ids, types, mask)
        if self._kind == "bi-encoder":
            if self._pooling == "cls":
                out = out[:, 0]
            else:
                weights = mask[:, :, None].astype(out.dtype)
                out = (out * weights).sum(axis=1) / mx.maximum(weights.sum(axis=1), 1e-9)
        result = np.array(out.astype(mx.float32))
        return result
