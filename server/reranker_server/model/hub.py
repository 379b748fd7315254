"""The hub: fill a Hugging Face cache with a model once, resumably, verified (``reranker-server download``).

Writes the hub cache layout (``models--org--name/{blobs,snapshots,refs}``) that the server, and
any other Hugging Face library, read with ``HF_HUB_OFFLINE=1``. Unlike ``snapshot_download``
(which restarts an interrupted file from byte 0 in a new process), a partial file keeps its
bytes on disk under a stable name, so a loader pod that was evicted mid-way resumes where it
stopped. Every file is checked against the hub's sha256 (LFS) or git blob id before it is
linked, and a ``verified`` marker is written last: a cache without it is not complete.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# What a reranker needs from a repository (weights, config, tokenizer), not its other formats.
MODEL_FILE_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "1_Pooling/*")
MARKER_DIR = "reranker-verified"  # inside models--org--name/: one file per verified commit
_CHUNK = 1 << 20
_RETRIES = 5


class DownloadError(RuntimeError):
    """The model can't be fetched or a file does not match what the hub says it is."""


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository
    size: int
    blob: str  # the name of its blob in the cache: the LFS sha256, else the git blob id
    lfs: bool


def repo_dir(cache_dir: Path, model: str) -> Path:
    return cache_dir / ("models--" + model.replace("/", "--"))


def wanted(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in MODEL_FILE_PATTERNS)


def remote_files(model: str, revision: str | None, token: str | None = None) -> tuple[str, list[RemoteFile]]:
    """The commit ``revision`` points at, and the files to fetch with their sizes and digests."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(token=token).model_info(model, revision=revision, files_metadata=True)
    except Exception as exc:
        raise DownloadError(f"cannot read {model!r} (revision {revision or 'main'}) from the hub: {exc}") from exc
    files = []
    for sibling in info.siblings or []:
        if not wanted(sibling.rfilename):
            continue
        if sibling.lfs is not None:
            files.append(RemoteFile(sibling.rfilename, int(sibling.lfs.size), sibling.lfs.sha256, True))
        elif sibling.blob_id is not None and sibling.size is not None:
            files.append(RemoteFile(sibling.rfilename, int(sibling.size), sibling.blob_id, False))
        else:
            raise DownloadError(f"the hub gave no size or digest for {sibling.rfilename}")
    if not files or info.sha is None:
        raise DownloadError(f"{model!r} (revision {revision or 'main'}) has no model files")
    return info.sha, files


class Digest:
    """sha256 of the content (LFS files), or git's blob id (sha1 of ``blob <size>\\0`` + content)."""

    def __init__(self, file: RemoteFile) -> None:
        self._hash = hashlib.sha256() if file.lfs else hashlib.sha1(f"blob {file.size}\0".encode())

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Progress:
    """A progress bar on stderr, and a JSON line on stdout every ``every`` seconds that the
    operator reads from the loader pod's log for the Reranker's status."""

    def __init__(self, total: int, done: int, out: IO[str], every: float = 2.0, bar: bool = True) -> None:
        self.total, self.done, self._out, self._every = total, done, out, every
        self._last = -float("inf")
        self._bar: Any = None
        if bar:
            from tqdm import tqdm  # type: ignore[import-untyped]

            self._bar = tqdm(total=total, initial=done, unit="B", unit_scale=True, file=sys.stderr, mininterval=1.0)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if time.monotonic() - self._last >= self._every:
            self.report()

    def report(self) -> None:
        self._last = time.monotonic()
        print(json.dumps({"downloadedBytes": self.done, "totalBytes": self.total}), file=self._out, flush=True)

    def close(self) -> None:
        self.report()
        if self._bar is not None:
            self._bar.close()


def fetch(client: Any, url: str, file: RemoteFile, blobs: Path, progress: Progress) -> Path:
    """Download one file into ``blobs/<blob>``, resuming ``<blob>.partial``; verified before it is named."""
    import httpx

    target, partial = blobs / file.blob, blobs / f"{file.blob}.partial"
    for attempt in range(_RETRIES + 1):
        offset = partial.stat().st_size if partial.exists() else 0
        if offset >= file.size:
            break  # complete (or too long): the digest decides
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with client.stream("GET", url, headers=headers) as response:
                if response.status_code == 200 and offset:  # the server ignored the range: start over
                    progress.advance(-offset)
                    offset = 0
                elif response.status_code not in (200, 206):
                    response.read()
                    raise DownloadError(f"{file.path}: HTTP {response.status_code}: {response.text[:200]}")
                with partial.open("r+b" if offset else "wb") as sink:
                    sink.truncate(offset)
                    sink.seek(offset)
                    for chunk in response.iter_bytes():  # as they arrive: a drop loses none
                        sink.write(chunk)
                        progress.advance(len(chunk))
            break
        except (httpx.TransportError, httpx.StreamError) as exc:
            if attempt == _RETRIES:
                raise DownloadError(f"{file.path}: gave up after {_RETRIES} retries: {exc}") from exc
            print(f"{file.path}: {exc}; resuming", file=sys.stderr)
            time.sleep(min(2**attempt * 0.2, 10))
    digest = Digest(file)
    with partial.open("rb") as source:
        while block := source.read(_CHUNK):
            digest.update(block)
    if partial.stat().st_size != file.size or digest.hexdigest() != file.blob:
        partial.unlink()  # a corrupt file must not be resumed either
        raise DownloadError(f"{file.path}: content does not match the hub's digest {file.blob} (removed; run again)")
    partial.rename(target)
    return target


def download(
    model: str,
    revision: str | None,
    cache_dir: Path,
    token: str | None = None,
    out: IO[str] = sys.stdout,
    bar: bool = True,
) -> Path:
    """Fetch what is missing, verify it, link the snapshot; returns the snapshot directory."""
    import httpx
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers  # type: ignore[attr-defined]

    commit, files = remote_files(model, revision, token)
    root = repo_dir(cache_dir, model)
    blobs, snapshot = root / "blobs", root / "snapshots" / commit
    blobs.mkdir(parents=True, exist_ok=True)
    have = sum(f.size for f in files if (blobs / f.blob).exists())
    have += sum((blobs / f"{f.blob}.partial").stat().st_size for f in files if (blobs / f"{f.blob}.partial").exists())
    progress = Progress(sum(f.size for f in files), have, out, bar=bar)
    headers = build_hf_headers(token=token)
    with httpx.Client(headers=headers, follow_redirects=True, timeout=httpx.Timeout(30.0)) as client:
        for file in files:
            if not (blobs / file.blob).exists():
                url = constants.HUGGINGFACE_CO_URL_TEMPLATE.format(repo_id=model, revision=commit, filename=file.path)
                fetch(client, url, file, blobs, progress)
            link = snapshot / file.path
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(Path("../" * (file.path.count("/") + 2)) / "blobs" / file.blob)
    progress.close()
    if revision != commit:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / (revision or "main")).write_text(commit)
    (root / MARKER_DIR).mkdir(exist_ok=True)
    (root / MARKER_DIR / commit).write_text(json.dumps({"files": [f.path for f in files]}))
    return snapshot


def verified_snapshot(cache_dir: Path, model: str, revision: str | None) -> Path | None:
    """The snapshot a completed ``download`` left for ``revision``; None while none is complete."""
    root = repo_dir(cache_dir, model)
    ref = root / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "")
    if commit and (root / MARKER_DIR / commit).is_file():
        return root / "snapshots" / commit
    return None


def wait_for(cache_dir: Path, model: str, revision: str | None, poll: float, say: Callable[[str], None]) -> Path:
    """Block until the loader has finished (the server pods' init container)."""
    said = False
    while (found := verified_snapshot(cache_dir, model, revision)) is None:
        if not said:
            say(f"waiting for {model} ({revision or 'main'}) in {cache_dir}")
            said = True
        time.sleep(poll)
    return found
