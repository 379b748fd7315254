"""A stand-in for the Hugging Face hub on loopback: one model repository from a local directory,
served through the hub's own file API (the parts ``huggingface_hub`` and our downloader use).

- ``GET /api/models/{repo}[/revision/{rev}]?blobs=true``: the commit and each file's size, git
  blob id and, for ``*.safetensors`` (LFS on the real hub), its sha256;
- ``GET /api/models/{repo}/tree/{rev}``: the same as a tree listing (``snapshot_download``);
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``,
  ``Content-Length``, byte ``Range`` requests (206);
- gated repos: 401 without ``Authorization: Bearer <token>``.
Faults a test can ask for: drop the connection after N bytes of a file (once), or serve
corrupted bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


@dataclass
class FakeHub:
    repo: str
    files: dict[str, bytes]
    token: str | None = None  # gated: this token is required
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the first GET drops
    corrupt: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    url: str = ""

    @classmethod
    def from_dir(cls, repo: str, directory: Path, **kwargs: object) -> FakeHub:
        files = {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
        }
        return cls(repo, files, **kwargs)  # type: ignore[arg-type]

    @staticmethod
    def lfs(path: str) -> bool:
        return path.endswith(".safetensors")

    def etag(self, path: str) -> str:
        data = self.files[path]
        return hashlib.sha256(data).hexdigest() if self.lfs(path) else git_blob_id(data)

    def sibling(self, path: str) -> dict[str, object]:
        data = self.files[path]
        entry: dict[str, object] = {"rfilename": path, "size": len(data), "blobId": git_blob_id(data)}
        if self.lfs(path):
            entry["lfs"] = {"size": len(data), "sha256": self.etag(path), "pointerSize": 134}
        return entry

    def tree_entry(self, path: str) -> dict[str, object]:
        data = self.files[path]
        entry: dict[str, object] = {"type": "file", "path": path, "size": len(data), "oid": git_blob_id(data)}
        if self.lfs(path):
            entry["lfs"] = {"oid": self.etag(path), "size": len(data), "pointerSize": 134}
        return entry

    def ranges(self, path: str) -> list[str | None]:
        return [r for method, p, r in self.requests if method == "GET" and p.endswith(f"/{path}")]


def _handler(hub: FakeHub) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _authorized(self) -> bool:
            if hub.token is None or self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            body = json.dumps({"error": "Access to this model is restricted. You must be authenticated."}).encode()
            self._send(401, body, {"Content-Type": "application/json", "X-Error-Code": "GatedRepo"})
            return False

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))
            if not self._authorized():
                return
            path = self.path.split("?", 1)[0]
            api = f"/api/models/{hub.repo}"
            if path == api or path.startswith(f"{api}/revision/"):
                info = {"id": hub.repo, "sha": COMMIT, "siblings": [hub.sibling(p) for p in hub.files]}
                self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
                return
            if path.startswith(f"{api}/tree/"):  # snapshot_download lists the files this way
                tree = [hub.tree_entry(p) for p in hub.files]
                self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
                return
            prefix = f"/{hub.repo}/resolve/"
            if not path.startswith(prefix) or path[len(prefix) :].split("/", 1)[-1] not in hub.files:
                self._send(404, b'{"error": "Entry not found"}', {"X-Error-Code": "EntryNotFound"})
                return
            file = path[len(prefix) :].split("/", 1)[1]
            self._file(file)

        def _file(self, file: str) -> None:
            data = hub.files[file]
            if file in hub.corrupt:
                data = bytes(b ^ 0xFF for b in data)
            headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{hub.etag(file)}"', "Accept-Ranges": "bytes"}
            if hub.lfs(file):
                headers["X-Linked-Etag"] = f'"{hub.etag(file)}"'
            start = 0
            if (spec := self.headers.get("Range")) and self.command == "GET":
                start = int(spec.removeprefix("bytes=").split("-", 1)[0])
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            body = data[start:]
            drop = hub.drop_after.pop(file, None) if self.command == "GET" else None
            if drop is None:
                self._send(206 if start else 200, body, headers)
                return
            # announce the whole file, send part of it, hang up: what a reset connection looks like
            self.send_response(206 if start else 200)
            for key, value in (headers | {"Content-Length": str(len(body))}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    return Handler


@contextmanager
def serving(hub: FakeHub, host: str = "127.0.0.1") -> Iterator[FakeHub]:
    """``host``: the address to listen on (the e2e suite's cluster reaches it on the node's)."""
    server = http.server.ThreadingHTTPServer((host, 0), _handler(hub))
    hub.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
