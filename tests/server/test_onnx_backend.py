"""ENGINE: ONNX Runtime runs encoder checkpoints on CPUs (the default there), PyTorch the rest.

Parity is checked against the PyTorch backend on ragged batches of shapes the export never saw
(the export traces one small batch with padding; a graph that baked in its shape, or dropped the
attention mask, would fail here). No speed is asserted: benchmarks/run_benchmark.py measures it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from reranker_server.backends import PaddedBatch, pad
from reranker_server.backends import selection as selection_module
from reranker_server.backends.onnx import export as onnx_export
from reranker_server.backends.onnx.backend import OnnxRuntimeBackend
from reranker_server.backends.onnx.graph_lock import LOCK_PREFIX, making
from reranker_server.backends.selection import cpu_engine
from reranker_server.core.settings import Settings
from reranker_server.loading.calibration import CALIBRATION_DOCUMENTS, CALIBRATION_QUERIES
from reranker_server.loading.loader import load_model
from reranker_server.model.checkpoint import inspect
from reranker_server.model.encoding import Sequence
from reranker_server.model.scoring import spearman
from reranker_server.model.tasks import ScoreOptions
from tests.processes import rss_mib
from tests.scores import ACROSS_ENGINES, assert_scores_close


@pytest.mark.parametrize(
    ("engine", "kind", "dtype", "installed", "chosen"),
    [
        ("auto", "cross-encoder", "float32", True, "onnxruntime"),
        ("auto", "bi-encoder", "int8", True, "onnxruntime"),
        ("auto", "cross-encoder", "bfloat16", True, "pytorch"),  # a CPU with native bf16: torch runs it
        ("auto", "llm-yes-no", "float32", True, "pytorch"),
        ("auto", "cross-encoder", "float32", False, "pytorch"),
        ("pytorch", "cross-encoder", "float32", True, "pytorch"),
        ("onnxruntime", "cross-encoder", "int8", True, "onnxruntime"),
    ],
)
def test_engine_choice(engine: str, kind: str, dtype: str, installed: bool, chosen: str) -> None:
    assert cpu_engine(engine, kind, dtype, installed) == chosen


@pytest.mark.parametrize(
    ("kind", "dtype", "installed", "said"),
    [
        ("llm-yes-no", "float32", True, "serves encoders (cross-encoder, bi-encoder), not llm-yes-no"),
        ("cross-encoder", "bfloat16", True, "runs float32 or int8 here, not bfloat16"),
        ("cross-encoder", "float32", False, "onnxruntime is not installed"),
    ],
)
def test_asking_for_onnxruntime_where_it_cannot_run_is_an_error(
    kind: str, dtype: str, installed: bool, said: str
) -> None:
    with pytest.raises(ValueError, match="ENGINE=onnxruntime: ") as raised:
        cpu_engine("onnxruntime", kind, dtype, installed)
    assert said in str(raised.value)


def _ragged_sequences(model: Any) -> list[Sequence]:
    """Pairs of different lengths (so a batch of them has padding), in a shape the export did not trace."""
    documents = [CALIBRATION_DOCUMENTS[i % len(CALIBRATION_DOCUMENTS)] * (1 + i % 3) for i in range(11)]
    sequences = list(model.task.encode("how do plants make food", documents, ScoreOptions()).sequences)
    assert len({len(s) for s in sequences}) > 3
    return sequences


@pytest.mark.scores
@pytest.mark.parametrize("fixture", ["minilm_cross_dir", "xlmr_cross_dir", "minilm_embed_dir"])
def test_onnxruntime_rows_equal_pytorch_rows(fixture: str, request: pytest.FixtureRequest) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    onnx = load_model(Settings(model_name=str(model_dir), dtype="float32", engine="onnxruntime"))
    torch = load_model(Settings(model_name=str(model_dir), dtype="float32", engine="pytorch"))
    assert (onnx.backend.name, torch.backend.name) == ("onnxruntime", "pytorch")
    sequences = _ragged_sequences(torch)
    batch = pad(sequences, torch.encoder.pad_id)
    ours, reference = onnx.backend.forward(batch), torch.backend.forward(batch)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert_scores_close(ours, reference, ACROSS_ENGINES)
    # the shortest row alone (no padding at all) scores as it does inside the padded batch
    shortest = min(range(len(sequences)), key=lambda i: len(sequences[i]))
    alone = onnx.backend.forward(pad([sequences[shortest]], torch.encoder.pad_id))
    assert_scores_close(alone[0], reference[shortest], ACROSS_ENGINES)


def test_onnxruntime_int8_ranks_close_to_float32(embedded_model: Any) -> None:
    """ONNX Runtime's int8 (dynamic quantization, as torch's) on the real all-MiniLM-L6-v2 weights:
    close to float32 in order, not equal, so DTYPE=auto keeps it only where it measures agreeing."""
    int8 = load_model(Settings(dtype="int8"))
    assert (int8.backend.name, int8.backend.dtype) == ("onnxruntime", "int8")
    agreement = [
        spearman(int8.score_sync(q, CALIBRATION_DOCUMENTS), embedded_model.score_sync(q, CALIBRATION_DOCUMENTS))
        for q in CALIBRATION_QUERIES
    ]
    assert 0.8 < float(np.mean(agreement)) < 1.0


def test_llm_rerankers_stay_on_pytorch(qwen3_reranker_dir: Path) -> None:
    assert load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32")).backend.name == "pytorch"
    with pytest.raises(RuntimeError, match="ENGINE=onnxruntime: it serves encoders"):
        load_model(Settings(model_name=str(qwen3_reranker_dir), dtype="float32", engine="onnxruntime"))


def test_an_export_failure_falls_back_to_pytorch_unless_asked_for(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(onnx_export, "export", refuse)
    settings = Settings(model_name=str(minilm_cross_dir), dtype="float32", onnx_cache_dir=tmp_path)
    model = load_model(settings)
    assert model.backend.name == "pytorch"
    assert "ONNX Runtime can't run" in caplog.text and "exporter says no" in caplog.text
    with pytest.raises(RuntimeError, match="exporter says no"):
        load_model(settings.model_copy(update={"engine": "onnxruntime"}))
    assert selection_module.onnxruntime_available()
    assert [p.name for p in tmp_path.iterdir()] == []  # no half-written graph left behind


class _Calls:
    """Counts calls to a function it wraps."""

    def __init__(self, function: Any) -> None:
        self.function, self.count = function, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return self.function(*args, **kwargs)


def test_a_checkpoint_is_exported_once_and_int8_is_quantized_from_it(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the batch first: loading a model to encode it may export into the session's cache, uncounted
    batch = pad(_ragged_sequences(load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32"))), 0)
    export, quantize = _Calls(onnx_export.export), _Calls(onnx_export.quantize)
    monkeypatch.setattr(onnx_export, "export", export)
    monkeypatch.setattr(onnx_export, "quantize", quantize)
    checkpoint = inspect(str(minilm_cross_dir), None)
    first = {dtype: OnnxRuntimeBackend(checkpoint, dtype, cache_dir=tmp_path) for dtype in ("float32", "int8")}
    assert (export.count, quantize.count) == (1, 1)  # int8 came from the float32 graph
    # graphs are named after the checkpoint's folder, then the dtype, then a key
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()) == [
        f"{minilm_cross_dir.name}-float32", f"{minilm_cross_dir.name}-int8"]  # fmt: skip
    # a restart with the cache in place: nothing exported, the same rows
    again = {dtype: OnnxRuntimeBackend(checkpoint, dtype, cache_dir=tmp_path) for dtype in ("float32", "int8")}
    assert (export.count, quantize.count) == (1, 1)
    for dtype in ("float32", "int8"):
        np.testing.assert_array_equal(again[dtype].forward(batch), first[dtype].forward(batch))


def test_a_changed_weight_file_makes_a_new_graph(minilm_cross_dir: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(minilm_cross_dir, model_dir)
    before = onnx_export.graph_key(inspect(str(model_dir), None), "float32")
    assert before == onnx_export.graph_key(inspect(str(model_dir), None), "float32")
    weights = next(model_dir.glob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000_000))
    assert onnx_export.graph_key(inspect(str(model_dir), None), "float32") != before
    assert before != onnx_export.graph_key(inspect(str(model_dir), None), "int8")


def test_an_unwritable_cache_falls_back_to_the_temp_directory(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    blocked = tmp_path / "a-file"
    blocked.write_text("a read-only model volume stands in here: nothing can be made below it")
    path = onnx_export.graph_for(inspect(str(minilm_cross_dir), None), "float32", cache_dir=blocked / "onnx")
    assert path.is_file() and path.parent.parent == tmp_path / "tmp" / "reranker-onnx"


def test_a_graph_another_process_cached_first_is_used(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = inspect(str(minilm_cross_dir), None)
    winner = tmp_path / onnx_export.graph_key(checkpoint, "float32")
    real_export = onnx_export.export

    def export_and_lose_the_race(checkpoint_: Any, path: Path) -> None:
        real_export(checkpoint_, path)
        winner.mkdir()
        shutil.copy(path, winner / onnx_export.GRAPH_FILE)

    monkeypatch.setattr(onnx_export, "export", export_and_lose_the_race)
    killed = _scratch(tmp_path, "killed", age=2 * onnx_export.STALE_SCRATCH_SECONDS)  # an OOM-killed try's
    assert onnx_export.graph_for(checkpoint, "float32", cache_dir=tmp_path) == winner / onnx_export.GRAPH_FILE
    assert not killed.exists()
    assert [p.name for p in tmp_path.iterdir()] == [winner.name]  # the loser's scratch is gone


def test_a_graph_another_process_is_making_is_waited_for_not_made_twice(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = inspect(str(minilm_cross_dir), None)
    made_elsewhere = onnx_export.graph_for(checkpoint, "float32", Path(os.environ["ONNX_CACHE_DIR"]))
    key = onnx_export.graph_key(checkpoint, "float32")
    other_holds = threading.Event()

    def other_process() -> None:  # flock conflicts between two opens of the file, threads included
        with making(tmp_path, key):
            other_holds.set()
            time.sleep(0.5)
            (tmp_path / key).mkdir()
            shutil.copy(made_elsewhere, tmp_path / key / onnx_export.GRAPH_FILE)

    def no_export(*_: Any) -> None:
        raise AssertionError("exported while another process was making the same graph")

    monkeypatch.setattr(onnx_export, "export", no_export)
    other = threading.Thread(target=other_process)
    other.start()
    assert other_holds.wait(10)
    assert onnx_export.graph_for(checkpoint, "float32", cache_dir=tmp_path) == tmp_path / key / onnx_export.GRAPH_FILE
    other.join()
    assert [p.name for p in tmp_path.iterdir()] == [key]


def test_a_graph_whose_making_was_killed_is_not_made_again_and_pytorch_serves(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A container OOM-killed while exporting would be killed again at every restart."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # no graph from another test's temp cache
    (tmp_path / "tmp").mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    key = onnx_export.graph_key(inspect(str(minilm_cross_dir), None), "float32")
    killed = cache / f"{LOCK_PREFIX}{key}"
    killed.write_text("pid 1 on reranker-7d9f since 2026-11-27T10:00:00+0000\n")  # its holder is gone
    half_made = cache / f"{onnx_export.SCRATCH_PREFIX}{key}-x1y2z3"
    half_made.mkdir()
    (half_made / onnx_export.GRAPH_FILE).write_bytes(b"half a graph: GBs for a large encoder")
    model = load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32", onnx_cache_dir=cache))
    assert model.backend.name == "pytorch"
    assert (
        "EarlierTryKilled: an earlier try at making" in caplog.text and "was killed before it finished" in caplog.text
    )
    assert [p.name for p in cache.iterdir()] == [killed.name]  # its half-made graph is gone


def _scratch(root: Path, name: str, age: float) -> Path:
    """A scratch directory with a half-written graph in it, last written ``age`` seconds ago."""
    scratch = root / (onnx_export.SCRATCH_PREFIX + name)
    (scratch / "exported").mkdir(parents=True)
    (scratch / "exported" / onnx_export.GRAPH_FILE).write_bytes(b"half a graph")
    for path in (scratch / "exported" / onnx_export.GRAPH_FILE, scratch / "exported", scratch):
        os.utime(path, (time.time() - age, time.time() - age))
    return scratch


def test_only_scratch_nothing_has_written_to_for_an_hour_is_removed(tmp_path: Path) -> None:
    stale = _scratch(tmp_path, "stale", age=onnx_export.STALE_SCRATCH_SECONDS + 60)
    busy = _scratch(tmp_path, "busy", age=onnx_export.STALE_SCRATCH_SECONDS + 60)
    (busy / "exported" / onnx_export.GRAPH_FILE).write_bytes(b"still being written")  # another process's export
    recent = _scratch(tmp_path, "recent", age=60)
    onnx_export.remove_stale_scratch(tmp_path)
    assert not stale.exists() and busy.exists() and recent.exists()


def test_a_cached_graph_that_does_not_load_is_made_again(
    minilm_cross_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpoint = inspect(str(minilm_cross_dir), None)
    broken = tmp_path / onnx_export.graph_key(checkpoint, "float32")
    broken.mkdir()
    (broken / onnx_export.GRAPH_FILE).write_bytes(b"not a graph")
    backend = OnnxRuntimeBackend(checkpoint, "float32", cache_dir=tmp_path)
    assert "does not load" in caplog.text
    assert (broken / onnx_export.GRAPH_FILE).stat().st_size > 1_000_000  # MiniLM-L6's weights
    sequences = _ragged_sequences(load_model(Settings(model_name=str(minilm_cross_dir), dtype="float32")))
    assert backend.forward(pad(sequences, 0)).shape == (len(sequences), 1)


def test_a_graph_the_container_has_no_room_to_make_is_refused_before_it_starts(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A 560M-parameter encoder's export peaked at 4.5 GiB here: in a 4 GiB pod it was OOM-killed
    at every start. Now the server sees the limit coming and PyTorch serves the model instead."""
    checkpoint = inspect(str(minilm_cross_dir), None)
    weights = onnx_export.float32_weight_bytes(checkpoint)
    assert weights == next(minilm_cross_dir.glob("*.safetensors")).stat().st_size
    monkeypatch.setattr(onnx_export, "memory_headroom", lambda: int(onnx_export.EXPORT_PEAK * weights) - 1)
    settings = Settings(model_name=str(minilm_cross_dir), dtype="float32", onnx_cache_dir=tmp_path)
    model = load_model(settings)
    assert model.backend.name == "pytorch"
    assert "GraphTooLarge: exporting" in caplog.text and "raise its memory limit, or set ENGINE=pytorch" in caplog.text
    assert list(tmp_path.iterdir()) == []  # refused before anything was written
    with pytest.raises(RuntimeError, match=r"needs about [\d.]+ GiB and this container has [\d.]+ GiB left"):
        load_model(settings.model_copy(update={"engine": "onnxruntime"}))


def test_auto_skips_an_int8_candidate_there_is_no_room_to_quantize(
    minilm_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room to export but not to quantize: float32 on ONNX Runtime, and no PyTorch int8 loaded beside it."""
    from reranker_server.loading import dtype_choice

    weights = onnx_export.float32_weight_bytes(inspect(str(minilm_cross_dir), None))
    monkeypatch.setattr(onnx_export, "memory_headroom", lambda: int(onnx_export.QUANTIZE_PEAK * weights) - 1)
    monkeypatch.setattr(dtype_choice, "cpu_has_native_bf16", lambda: False)
    model = load_model(Settings(model_name=str(minilm_cross_dir), dtype="auto", onnx_cache_dir=tmp_path))
    assert (model.backend.name, model.backend.dtype) == ("onnxruntime", "float32")
    assert model.dtype_note.startswith("auto: float32 on onnxruntime")
    assert "int8/onnxruntime unavailable (GraphTooLarge: quantizing" in model.dtype_note


def test_half_precision_checkpoints_count_as_float32_in_memory(minilm_cross_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(minilm_cross_dir, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps(config | {"torch_dtype": "float16"}))
    stored = next(minilm_cross_dir.glob("*.safetensors")).stat().st_size
    assert onnx_export.float32_weight_bytes(inspect(str(tmp_path / "model"), None)) == 2 * stored


def test_going_idle_gives_the_arena_back(minilm_cross_dir: Path) -> None:
    """A large batch grows ONNX Runtime's arena by hundreds of MiB; idle() returns it (measured here:
    +300 MiB for the batch below, back within a few MiB of where it started)."""
    backend = OnnxRuntimeBackend(inspect(str(minilm_cross_dir), None), "float32")
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, (64, 256))
    big = PaddedBatch(ids, np.ones_like(ids), np.zeros_like(ids))
    backend.forward(big)
    grown = rss_mib()
    backend.idle()
    assert rss_mib() < grown - 100
    assert backend.forward(big).shape == (64, 1)  # and the next batch runs as before


def test_the_session_plans_no_memory_patterns(minilm_cross_dir: Path) -> None:
    """Memory patterns (one planned block per input shape) grew the server's RSS by ~80 MiB long
    after warm-up under a steady soak; the soaks that show it take minutes, so this checks that the
    setting reaches the session (docs/design/cpu-engine.md has the soaks)."""
    backend = OnnxRuntimeBackend(inspect(str(minilm_cross_dir), None), "float32")
    assert backend._session.get_session_options().enable_mem_pattern is False


def test_the_server_reports_its_engine(minilm_cross_dir: Path, start_server: Any) -> None:
    for engine in ("onnxruntime", "pytorch"):
        server = start_server({"MODEL_NAME": str(minilm_cross_dir), "DTYPE": "float32", "ENGINE": engine})
        assert httpx.get(f"{server.url}/health").json()["model"]["backend"] == engine
        response = httpx.post(f"{server.url}/v1/rerank", json={"query": "capital of france", "documents": ["a", "b"]})
        assert response.status_code == 200 and len(response.json()["results"]) == 2
        server.stop()
