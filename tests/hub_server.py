"""A local stand-in for the Hugging Face Hub, for tests of the real download path.

It speaks the part of the Hub's HTTP API that `huggingface_hub` 2.4's `snapshot_download` and `hf_hub_download`
use (read from the installed client: `HfApi.repo_info` / `model_info`, `HfApi.list_repo_tree`,
`get_hf_file_metadata` and `http_get`):

- `GET /api/models/<repo>` and `/api/models/<repo>/revision/<rev>`: the repo's info (`id`, `sha`, `siblings` with sizes).
- `GET /api/models/<repo>/tree/<rev>[/<path>]`: its files and folders (recursive listing).
- `HEAD|GET /<repo>/resolve/<rev>/<path>`: a file, with `X-Repo-Commit`, `ETag`, `Content-Length` and `Range` support
  (206 with `Content-Range`), as the client needs to resume.

A repo marked gated answers its files with 401 (no token sent) or 403 (a token sent), `X-Error-Code: GatedRepo`, as
the Hub does before the licence is accepted; its info and tree stay public, as on the Hub. A file named in
`drop_once` is cut off midway on its first full GET (the connection closes), to test resuming. Every request is
recorded in `requests`, so a test can check that an offline store never called.

Repos are built from the layout manifests in `tests/layouts/` (`repo_from_manifest`): every file under its real name,
with small bytes; configs carry the manifest's `_class_name`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LAYOUTS = Path(__file__).parent / "layouts"

_INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$")
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    sha: str = ""

    def __post_init__(self):
        if not self.sha:
            digest = hashlib.sha1(self.repo_id.encode())
            for path in sorted(self.files):
                digest.update(path.encode() + hashlib.sha1(self.files[path]).digest())
            self.sha = digest.hexdigest()


@dataclass
class LocalHub:
    repos: dict[str, HubRepo] = field(default_factory=dict)
    # (repo id, path) of files to cut off midway on their first full GET.
    drop_once: set[tuple[str, str]] = field(default_factory=set)
    # (method, path) of every request, in order; the paths of GETs that asked for a byte range (a resume).
    requests: list[tuple[str, str]] = field(default_factory=list)
    range_requests: list[str] = field(default_factory=list)
    url: str = ""

    def add(self, repo: HubRepo) -> HubRepo:
        self.repos[repo.repo_id] = repo
        return repo

    def __enter__(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def file_requests(self, repo_id: str) -> list[str]:
        """The paths of `repo_id` whose bytes were asked for (GET)."""
        prefix = f"/{repo_id}/resolve/"
        return [unquote(urlsplit(path).path[len(prefix):].partition("/")[2]) for method, path in self.requests
                if method == "GET" and path.startswith(prefix)]


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the test output is not the place for an access log
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((self.command, self.path))
        if match := _TREE.match(path):
            return self._tree(match)
        if match := _INFO.match(path):
            return self._info(match)
        if match := _RESOLVE.match(path):
            return self._resolve(match, body)
        self._json(404, {"error": "Not found"}, headers={"X-Error-Code": "EntryNotFound"})

    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._json(404, {"error": "Repository not found"}, headers={"X-Error-Code": "RepoNotFound"})
        return repo

    def _info(self, match) -> None:
        repo = self._repo(match["repo"])
        if repo is None:
            return
        siblings = [{"rfilename": path, "size": len(data)} for path, data in sorted(repo.files.items())]
        self._json(200, {
            "id": repo.repo_id, "modelId": repo.repo_id, "sha": repo.sha, "private": False,
            "gated": "manual" if repo.gated else False, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0,
        })

    def _tree(self, match) -> None:
        repo = self._repo(match["repo"])
        if repo is None:
            return
        under = unquote(match["path"] or "").strip("/")
        entries, folders = [], set()
        for path, data in sorted(repo.files.items()):
            if under and not path.startswith(under + "/"):
                continue
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folders.add("/".join(parts[:depth]))
            entries.append({"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()})
        entries += [{"type": "directory", "path": folder, "oid": hashlib.sha1(folder.encode()).hexdigest()}
                    for folder in sorted(folders) if not under or folder.startswith(under + "/")]
        self._json(200, entries)

    def _resolve(self, match, body: bool) -> None:
        repo = self._repo(match["repo"])
        if repo is None:
            return
        if repo.gated:
            status = 403 if self.headers.get("Authorization") else 401
            message = f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated."
            return self._json(status, {"error": message}, headers={"X-Error-Code": "GatedRepo", "X-Error-Message": message})
        path = unquote(match["path"])
        data = repo.files.get(path)
        if data is None:
            return self._json(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
        start = _range_start(self.headers.get("Range"))
        if start and body:
            self.hub.range_requests.append(path)
        headers = {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"', "Accept-Ranges": "bytes"}
        if start and start < len(data):
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            return self._send(206, data[start:] if body else b"", headers, length=len(data) - start)
        key = (repo.repo_id, path)
        if body and key in self.hub.drop_once:
            self.hub.drop_once.discard(key)
            # Promise the whole file, send half, hang up: what a dropped connection looks like to the client.
            self._send(200, data[: len(data) // 2], headers, length=len(data))
            self.close_connection = True
            return
        self._send(200, data if body else b"", headers, length=len(data))

    def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self._send(status, data if self.command != "HEAD" else b"", {"Content-Type": "application/json", **(headers or {})},
                   length=len(data))

    def _send(self, status: int, data: bytes, headers: dict[str, str], length: int) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if data:
            self.wfile.write(data)
            self.wfile.flush()


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", header or "")
    return int(match[1]) if match else 0


# -- repos from the layout manifests ---------------------------------------------------------------------------------

def manifest_path(repo_id: str) -> Path:
    return LAYOUTS / (repo_id.replace("/", "__") + ".json")


def load_manifest(repo_id: str) -> dict:
    return json.loads(manifest_path(repo_id).read_text())


def repo_from_manifest(repo_id: str, weight_bytes: int = 64_000, gated: bool | None = None) -> HubRepo:
    """The manifest's repo with every file under its real name: configs as JSON with their `_class_name`, other files
    as `weight_bytes` (weights) or a few bytes (tokenizers, docs) of deterministic filler."""
    manifest = load_manifest(repo_id)
    files = {}
    for entry in manifest["files"]:
        path = entry["path"]
        if path in manifest.get("classes", {}):
            files[path] = json.dumps({"_class_name": manifest["classes"][path]}).encode()
        elif path.endswith((".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".gguf", ".onnx", ".msgpack")):
            files[path] = _filler(f"{repo_id}/{path}", weight_bytes)
        else:
            files[path] = _filler(f"{repo_id}/{path}", 200)
    return HubRepo(repo_id, files, gated=manifest.get("gated", False) if gated is None else gated)


def _filler(seed: str, size: int) -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def point_client_at(hub: LocalHub, monkeypatch, cache_dir: Path) -> None:
    """Send `huggingface_hub` to `hub`, online, with an empty cache. The client reads `HF_ENDPOINT` once at import
    (into `constants.ENDPOINT` and the resolve URL template), and conftest has imported it offline already: patch the
    constants it reads at call time instead."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
