"""``reranker-server download`` against a stand-in for the hub on loopback, and the server reading
what it left with HF_HUB_OFFLINE=1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reranker_server.cli import download
from reranker_server.model import hub as model_hub
from tests.server.fake_hub import COMMIT, FakeHub, serving

REPO_ID = "acme/tiny-reranker"
WEIGHTS = "model.safetensors"


@pytest.fixture
def hub(xlmr_cross_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    from huggingface_hub import constants

    with serving(FakeHub.from_dir(REPO_ID, xlmr_cross_dir)) as running:
        # what HF_ENDPOINT sets when huggingface_hub is imported
        monkeypatch.setattr(constants, "ENDPOINT", running.url)
        template = running.url + "/{repo_id}/resolve/{revision}/{filename}"
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; this hub is loopback
        yield running


def _fetch(cache: Path, revision: str | None = None, token: str | None = None) -> tuple[Path, list[dict[str, int]]]:
    out = io.StringIO()
    snapshot = model_hub.download(REPO_ID, revision, cache, token=token, out=out, bar=False)
    return snapshot, [json.loads(line) for line in out.getvalue().splitlines()]


def test_fills_the_hub_cache_layout_that_huggingface_hub_reads_offline(hub: FakeHub, tmp_path: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot, progress = _fetch(tmp_path)
    assert snapshot == tmp_path / f"models--acme--tiny-reranker/snapshots/{COMMIT}"
    for path, data in hub.files.items():
        assert (snapshot / path).read_bytes() == data
        assert (snapshot / path).is_symlink()  # one blob per content, as the hub cache keeps it
    offline = snapshot_download(REPO_ID, cache_dir=tmp_path, local_files_only=True)
    assert Path(offline) == snapshot
    total = sum(len(d) for d in hub.files.values())
    assert progress[-1] == {"downloadedBytes": total, "totalBytes": total}
    assert model_hub.verified_snapshot(tmp_path, REPO_ID, None) == snapshot


def test_a_second_run_fetches_nothing(hub: FakeHub, tmp_path: Path) -> None:
    _fetch(tmp_path)
    hub.requests.clear()
    _fetch(tmp_path)
    assert [r for r in hub.requests if "/resolve/" in r[1]] == []


def test_a_connection_dropped_mid_file_resumes_from_the_byte_it_reached(hub: FakeHub, tmp_path: Path) -> None:
    size = len(hub.files[WEIGHTS])
    hub.drop_after[WEIGHTS] = size // 3
    snapshot, _ = _fetch(tmp_path)
    assert hub.ranges(WEIGHTS) == [None, f"bytes={size // 3}-"]
    assert hashlib.sha256((snapshot / WEIGHTS).read_bytes()).hexdigest() == hub.etag(WEIGHTS)


def test_a_partial_file_left_by_a_killed_loader_is_resumed_not_restarted(hub: FakeHub, tmp_path: Path) -> None:
    data = hub.files[WEIGHTS]
    blobs = model_hub.repo_dir(tmp_path, REPO_ID) / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{hub.etag(WEIGHTS)}.partial").write_bytes(data[:1000])
    snapshot, progress = _fetch(tmp_path)
    assert hub.ranges(WEIGHTS) == ["bytes=1000-"]
    assert (snapshot / WEIGHTS).read_bytes() == data
    assert progress[0]["downloadedBytes"] >= 1000  # counted from what was already there


def test_content_that_does_not_match_the_hub_digest_is_refused_and_removed(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add(WEIGHTS)
    with pytest.raises(model_hub.DownloadError, match=f"{WEIGHTS}: content does not match"):
        _fetch(tmp_path)
    blobs = model_hub.repo_dir(tmp_path, REPO_ID) / "blobs"
    assert not list(blobs.glob(f"{hub.etag(WEIGHTS)}*"))
    assert model_hub.verified_snapshot(tmp_path, REPO_ID, None) is None


def test_a_gated_model_needs_the_token(hub: FakeHub, tmp_path: Path) -> None:
    hub.token = "hf_secret"
    with pytest.raises(model_hub.DownloadError, match="cannot read 'acme/tiny-reranker'"):
        _fetch(tmp_path)
    snapshot, _ = _fetch(tmp_path, token="hf_secret")
    assert (snapshot / WEIGHTS).exists()


def test_a_revision_is_recorded_and_only_files_a_reranker_needs_are_fetched(hub: FakeHub, tmp_path: Path) -> None:
    hub.files["onnx/model.onnx"] = b"not wanted"
    _fetch(tmp_path, revision="v1")
    root = model_hub.repo_dir(tmp_path, REPO_ID)
    assert (root / "refs" / "v1").read_text() == COMMIT
    assert not (root / "snapshots" / COMMIT / "onnx").exists()
    assert model_hub.verified_snapshot(tmp_path, REPO_ID, "v1") is not None
    assert model_hub.verified_snapshot(tmp_path, REPO_ID, "v2") is None


def _cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reranker_server", "download", *args],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_downloads_then_the_server_runs_offline_from_the_cache(
    xlmr_cross_dir: Path, tmp_path: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "hub"
    with serving(FakeHub.from_dir(REPO_ID, xlmr_cross_dir)) as hub:
        done = _cli([REPO_ID, "--cache-dir", str(cache)], {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["downloadedBytes"] > 0
    ready = _cli([REPO_ID, "--cache-dir", str(cache), "--wait"], {}, timeout=30)
    assert ready.returncode == 0 and "is ready in" in ready.stderr
    # the hub is gone: the server must not need it
    server = start_server({"MODEL_NAME": REPO_ID, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"})
    health = httpx.get(f"{server.url}/health").json()
    assert health["model"]["source"] == f"cache:{REPO_ID}"
    response = httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert response.status_code == 200 and len(response.json()["results"]) == 2


def test_a_model_baked_into_the_image_is_found_when_hf_home_points_elsewhere(
    hub: FakeHub, tmp_path: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    """The operator's pods: HF_HOME on a writable scratch volume, the image's cache (BAKED_HUB_CACHE) read-only."""
    baked = tmp_path / "image" / "hub"
    _fetch(baked)  # what the Dockerfile's BAKE_MODEL step runs
    baked.chmod(0o555)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    server = start_server({"MODEL_NAME": REPO_ID, "HF_HOME": str(scratch), "BAKED_HUB_CACHE": str(baked),
                           "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert httpx.get(f"{server.url}/health").json()["model"]["source"] == f"cache:{REPO_ID}"
    response = httpx.post(f"{server.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert response.status_code == 200, response.text


def test_cli_wait_blocks_until_the_cache_is_complete(tmp_path: Path) -> None:
    with pytest.raises(subprocess.TimeoutExpired):
        _cli([REPO_ID, "--cache-dir", str(tmp_path), "--wait", "--poll", "0.1"], {}, timeout=3)


def test_cli_says_what_failed(tmp_path: Path) -> None:
    with serving(FakeHub(REPO_ID, {})) as hub:
        result = _cli(["acme/missing", "--cache-dir", str(tmp_path)], {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"})
    assert result.returncode == 1
    assert "reranker-server download: cannot read 'acme/missing'" in result.stderr


def test_the_server_still_fetches_from_the_hub_itself_without_a_cache(
    xlmr_cross_dir: Path, tmp_path: Path, start_server
) -> None:  # type: ignore[no-untyped-def]
    with serving(FakeHub.from_dir(REPO_ID, xlmr_cross_dir)) as hub:
        server = start_server(
            {"MODEL_NAME": REPO_ID, "HF_HUB_CACHE": str(tmp_path), "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0"}
        )
    assert httpx.get(f"{server.url}/health").json()["model"]["source"] == f"remote:{REPO_ID}"


def test_cli_onnx_leaves_the_graph_a_server_on_that_cache_starts_from(
    xlmr_cross_dir: Path, tmp_path: Path, start_server, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # both sides on the default graph cache, $HF_HOME/reranker-onnx, as the operator's pods are
    monkeypatch.delenv("ONNX_CACHE_DIR", raising=False)
    home = tmp_path / "hf"
    with serving(FakeHub.from_dir(REPO_ID, xlmr_cross_dir)) as hub:
        env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(home)}
        done = _cli([REPO_ID, "--cache-dir", str(home / "hub"), "--onnx", "float32,int8"], env, timeout=300)
    assert done.returncode == 0, done.stderr
    for dtype in ("float32", "int8"):
        assert f"{dtype} ONNX graph for the CPU engine in {home / 'reranker-onnx'}" in done.stderr
    made = sorted(p.name for p in (home / "reranker-onnx").iterdir())
    assert len(made) == 2
    server = start_server({"MODEL_NAME": REPO_ID, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1",
                           "ENGINE": "onnxruntime", "DTYPE": "int8"})  # fmt: skip
    assert httpx.get(f"{server.url}/health").json()["model"]["backend"] == "onnxruntime"
    int8 = next(name for name in made if "-int8-" in name)
    assert f"ONNX graph from the cache: {home / 'reranker-onnx' / int8}" in server.log()
    assert "ONNX graph made" not in server.log()  # it exported and quantized nothing itself
    assert sorted(p.name for p in (home / "reranker-onnx").iterdir()) == made


def test_onnx_is_made_for_encoders_only_and_never_fails_the_download(
    qwen3_reranker_dir: Path, xlmr_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = download.make_cpu_graph("acme/qwen3-reranker", None, qwen3_reranker_dir, "float32")
    assert said == (False, "no ONNX graph: ONNX Runtime serves encoders, not llm-yes-no")

    monkeypatch.setenv("ONNX_CACHE_DIR", str(tmp_path))  # an empty graph cache: it has to export
    monkeypatch.setattr("reranker_server.backends.onnx.export.memory_headroom", lambda: 0)  # no memory left
    made, said = download.make_cpu_graph(REPO_ID, None, xlmr_cross_dir, "float32")
    assert not made
    assert said.startswith("no float32 ONNX graph (GraphTooLarge: exporting acme/tiny-reranker for ONNX Runtime")
    assert said.endswith("each server makes its own or runs PyTorch")
    assert list(tmp_path.iterdir()) == []  # nor a marker that would stop the next loader from trying


def test_a_graph_whose_making_was_killed_is_not_tried_again(
    xlmr_cross_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reranker_server.backends.onnx.export import graph_key
    from reranker_server.model.checkpoint import cache_source, read

    monkeypatch.setenv("ONNX_CACHE_DIR", str(tmp_path))
    made, said = download.make_cpu_graph(REPO_ID, None, xlmr_cross_dir, "float32")
    assert made and list(tmp_path.glob(".making-*")) == []  # done: nothing says a try is under way
    # a loader OOM-killed mid-export leaves its lock file saying so; the restarted one must not loop on it
    checkpoint = read(xlmr_cross_dir, REPO_ID, cache_source(REPO_ID), None)
    (tmp_path / f".making-{graph_key(checkpoint, 'int8')}").write_text("pid 1 on loader-x since then\n")
    made, said = download.make_cpu_graph(REPO_ID, None, xlmr_cross_dir, "int8")
    assert not made and said.startswith("no int8 ONNX graph (EarlierTryKilled: an earlier try at making")
    assert "was killed before it finished" in said and said.endswith("each server makes its own or runs PyTorch")
    assert not any("-int8-" in p.name for p in tmp_path.iterdir() if not p.name.startswith("."))


def test_cli_onnx_takes_float32_and_int8_only(tmp_path: Path) -> None:
    result = _cli([REPO_ID, "--cache-dir", str(tmp_path), "--onnx", "bfloat16"], {})
    assert result.returncode == 2 and "float32 and/or int8, comma-separated, not 'bfloat16'" in result.stderr
