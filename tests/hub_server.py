"""A tiny in-memory Hugging Face Hub for tests, served on 127.0.0.1 from a thread.

It implements only what huggingface_hub 2.4 calls to publish and fetch a small model:

    POST /api/repos/create                         create_repo
    POST /api/validate-yaml                        create_commit checks README.md metadata first
    POST /api/models/{repo}/preupload/{rev}        create_commit asks how to send each file
    POST /api/models/{repo}/commit/{rev}           create_commit (NDJSON: header + base64 files)
    POST /api/models/{repo}/branch/{branch}        create_branch
    GET  /api/models/{repo}[/revision/{rev}]       model_info: resolves a revision to a commit sha
    HEAD/GET /{repo}/resolve/{rev}/{path}          hf_hub_download (ETag, X-Repo-Commit, Content-Length)

No LFS and no Xet: /preupload answers "regular" for every file, so the client sends file contents inline
(base64) in the commit payload, whatever their size (see _commit_api._prepare_commit_payload).
Errors carry the X-Error-Code header the client maps to RepositoryNotFoundError & co.
Failures to test against: a gated repo (`Repo.gated`: its files answer 403 GatedRepo, as for a user who has
not accepted its terms), and `HubServer.fail_with` (every request answered with that HTTP status, no code).

Usage:
    with HubServer() as hub:
        os.environ["HF_ENDPOINT"] = hub.url   # before huggingface_hub is imported, or patch its constants
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

REPO = r"(?P<repo>[^/]+/[^/]+)"
ROUTES = [  # (method, pattern, handler name); first match wins
    ("POST", r"/api/repos/create", "create_repo"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", "commit"),
    ("POST", rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)", "create_branch"),
    ("GET", rf"/api/models/{REPO}(?:/revision/(?P<rev>[^/]+))?", "model_info"),
    ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
    ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", "resolve"),
]


def git_blob_sha(data: bytes) -> str:
    """The ETag the Hub gives a regular (non-LFS) file: its git blob id."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    gated: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha

    def resolve(self, rev: str) -> str | None:
        return self.refs.get(rev) or (rev if rev in self.commits else None)

    def add_commit(self, branch: str, files: dict[str, bytes], message: str) -> str:
        parent = self.refs.get(branch, "")
        sha = hashlib.sha1(json.dumps([parent, message, sorted((p, git_blob_sha(c)) for p, c in files.items()),
                                       len(self.commits)]).encode()).hexdigest()
        self.commits[sha] = files
        self.refs[branch] = sha
        return sha


class HubServer:
    """The in-memory Hub. `requests` records (method, path, authorization header) for assertions."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.fail_with: int | None = None  # e.g. 500 (an outage) or 403 (a refusal): answered to every request
        self.stopped = False
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def __enter__(self) -> HubServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """The Hub goes away (also mid-test); safe to call twice."""
        if not self.stopped:
            self.stopped = True  # kept-alive connections outlive the listening socket: they get no answer either
            self.httpd.shutdown()
            self.httpd.server_close()

    def files(self, repo_id: str, rev: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return repo.commits[repo.resolve(rev)]

    # --- endpoint handlers: each returns (status, headers, body) -------------------------------------------

    def create_repo(self, req, body):
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        if repo_id in self.repos:
            return _json(409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"})
        self.repos[repo_id] = repo = Repo(private=body.get("visibility") == "private" or bool(body.get("private")))
        repo.add_commit("main", {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"},
                        "initial commit")
        return _json(200, {"url": f"{self.url}/{repo_id}"})

    def validate_yaml(self, req, body):
        return _json(200, {"errors": [], "warnings": []})

    def preupload(self, req, body, repo, rev):
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]
        return _json(200, {"files": files})

    def commit(self, req, body, repo, rev):
        if rev not in self.repos[repo].refs:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        files = dict(self.files(repo, rev))
        message = ""
        for item in lines:
            key, value = item["key"], item["value"]
            if key == "header":
                message = value["summary"]
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            else:  # lfsFile etc.: this server told the client to send everything inline
                return _error(400, "BadRequest", f"unsupported commit operation {key!r}")
        sha = self.repos[repo].add_commit(rev, files, message)
        return _json(200, {"commitUrl": f"{self.url}/{repo}/commit/{sha}", "commitOid": sha,
                           "pullRequestUrl": None})

    def create_branch(self, req, body, repo, rev):
        r = self.repos[repo]
        if rev in r.refs:
            return _error(409, "Conflict", f"Branch {rev} already exists")
        start = r.resolve((body or {}).get("startingPoint") or "main")
        r.refs[rev] = start
        return _json(200, {})

    def model_info(self, req, body, repo, rev):
        sha = self.repos[repo].resolve(rev or "main")
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        siblings = [{"rfilename": p} for p in sorted(self.repos[repo].commits[sha])]
        return _json(200, {"id": repo, "sha": sha, "private": self.repos[repo].private, "siblings": siblings})

    def resolve(self, req, body, repo, rev, path):
        sha = self.repos[repo].resolve(rev)
        if sha is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        if self.repos[repo].gated:  # metadata stays public, files need the terms accepted (like the real Hub)
            return _error(403, "GatedRepo", f"Access to model {repo} is restricted: accept its conditions")
        content = self.repos[repo].commits[sha].get(path)
        if content is None:
            status, headers, data = _error(404, "EntryNotFound", f"{path} does not exist on {rev}")
            return status, {**headers, "X-Repo-Commit": sha}, data
        headers = {"ETag": f'"{git_blob_sha(content)}"', "X-Repo-Commit": sha,
                   "Content-Type": "application/octet-stream"}
        return 200, headers, content

    # --- dispatch ----------------------------------------------------------------------------------------------

    def handle(self, req: BaseHTTPRequestHandler, method: str):
        path = unquote(urlsplit(req.path).path)
        auth = req.headers.get("Authorization")
        with self.lock:
            self.requests.append((method, path, auth))
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        if self.fail_with is not None:
            return _json(self.fail_with, {"error": "failing on purpose"})
        for route_method, pattern, name in ROUTES:
            match = re.fullmatch(pattern, path)
            if route_method != method or not match:
                continue
            params = {k: v for k, v in match.groupdict().items()}
            repo = self.repos.get(params.get("repo", ""))
            # Like the real Hub, a private repo is invisible without a token.
            if "repo" in params and (repo is None or (repo.private and not auth)):
                return _error(404, "RepoNotFound", f"Repository not found: {params['repo']}")
            is_ndjson = "ndjson" in (req.headers.get("Content-Type") or "")
            body = raw.decode() if is_ndjson else (json.loads(raw) if raw else None)
            with self.lock:
                return getattr(self, name)(req, body, **params)
        return _error(404, "NotFound", f"no route for {method} {path}")


def _json(status: int, payload) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(payload).encode()


def _error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    status, headers, body = _json(status, {"error": message})
    return status, {**headers, "X-Error-Code": code, "X-Error-Message": message}, body


def _handler_for(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects

        def _serve(self, method: str) -> None:
            if hub.stopped:  # hang up without an answer, as a server that is gone
                self.close_connection = True
                return
            status, headers, body = hub.handle(self, method)
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))  # HEAD too: hf_hub_download reads the size here
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            self._serve("GET")

        def do_HEAD(self):
            self._serve("HEAD")

        def do_POST(self):
            self._serve("POST")

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    return Handler
