"""A minimal in-memory Hugging Face Hub on 127.0.0.1, for offline push / download round trips.

    with FakeHub() as hub:                        # serves http://127.0.0.1:<free port>
        env = hub.client_env(hf_home)             # HF_ENDPOINT, HF_TOKEN, HF_HOME, ... for a client process
        ...                                       # create_repo / upload_folder / push_to_hub / from_pretrained
        hub.files("user/repo")                    # {path: bytes} at the head of main (or revision=sha)

It implements just the routes huggingface_hub 2.x calls for `create_repo`, `upload_folder`,
`create_commit`, `push_to_hub` and file downloads:

    GET  /api/whoami-v2                                    the dummy token's user
    POST /api/repos/create                                 409 when the repo exists
    POST /api/validate-yaml                                README metadata check (always fine)
    POST /api/{type}s/{repo}/preupload/{rev}               "lfs" for files >= lfs_threshold, else "regular"
    POST /{prefix}{repo}.git/info/lfs/objects/batch        basic transfer: one PUT per object
    PUT  /_lfs/{oid}                                       stores the blob (sha256 checked)
    POST /api/{type}s/{repo}/commit/{rev}                  ndjson: header, file, lfsFile, deleted*
    GET  /api/{type}s/{repo}[/revision/{rev}]              repo info with siblings
    GET  /api/{type}s/{repo}/tree/{rev}[/{path}]           file listing
    POST /api/{type}s/{repo}/paths-info/{rev}              file metadata
    HEAD/GET /{prefix}{repo}/resolve/{rev}/{path}          X-Repo-Commit, ETag, X-Linked-* headers

The server decides each file's upload mode. With hf_xet installed, huggingface_hub sends "lfs"
files to Xet storage, which this hub does not serve: so with lfs_threshold set, client_env() also
sets HF_HUB_DISABLE_XET=1 and "lfs" files take the LFS batch route; the default lfs_threshold=None
(everything "regular", base64 in the commit) works for any client. Requests to any other route
get a 404 and are recorded in `hub.unknown`; every request is recorded in `hub.log`.
"""
import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

USER = "fake-user"
TOKEN = "hf_fakehubdummytoken0000000000000000"
PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
_REV = r"(?P<rev>[^/]+)"


class Repo:
    """One branch, main: its commits (oldest first) and the files at each."""

    def __init__(self, repo_id, repo_type):
        self.id, self.type = repo_id, repo_type
        self.commits = [hashlib.sha1(repo_id.encode()).hexdigest()]   # the initial empty commit
        self.snapshots = {self.sha: ({}, frozenset())}               # sha -> ({path: bytes}, LFS paths)

    @property
    def sha(self):
        return self.commits[-1]

    @property
    def files(self):
        return self.snapshots[self.sha][0]

    @property
    def lfs(self):
        return self.snapshots[self.sha][1]

    def at(self, rev):
        """(sha, files, lfs) at a revision ("main" or a commit sha), or None."""
        sha = self.sha if rev in ("main", "HEAD") else rev
        return (sha, *self.snapshots[sha]) if sha in self.snapshots else None


class FakeHub:
    def __init__(self, lfs_threshold=None, user=USER):
        self.lfs_threshold = lfs_threshold      # size from which preupload answers "lfs"
        self.user = user
        self.repos = {}                         # (type, repo_id) -> Repo
        self.blobs = {}                         # sha256 hex -> bytes, from LFS uploads
        self.log = []                           # (method, path) of every request
        self.unknown = []                       # (method, path) answered 404 for want of a route
        self.lock = threading.Lock()
        self.server = None

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self):
        hub = self

        class Handler(_Handler):
            pass
        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(timeout=5)
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def endpoint(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def client_env(self, hf_home, base=None):
        """Environment for a client process: this hub, a dummy token, a private cache, online."""
        import os
        env = dict(os.environ if base is None else base)
        for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE",
                    "HF_MODULES_CACHE", "TRANSFORMERS_CACHE", "HF_TOKEN_PATH"):
            env.pop(key, None)
        env.update(HF_ENDPOINT=self.endpoint, HF_TOKEN=TOKEN, HF_HOME=str(hf_home),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
                   NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
        if self.lfs_threshold is not None:
            env["HF_HUB_DISABLE_XET"] = "1"      # "lfs" files must take the LFS batch route
        return env

    # ---- inspection -----------------------------------------------------------------------
    def files(self, repo_id, revision="main", repo_type="model"):
        """{path: bytes} of a repo at a revision (a commit sha from `hub.repos[...].commits`)."""
        return dict(self.repos[(repo_type, repo_id)].at(revision)[1])

    # ---- routes ---------------------------------------------------------------------------
    def route(self, h, method, path, query):
        """-> (status, headers, body) or None for an unknown route."""
        api = "/api/(?P<type>model|dataset|space)s/" + _REPO
        table = [
            ("GET", r"/api/whoami-v2", self.whoami),
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", api + "/preupload/" + _REV, self.preupload),
            ("POST", api + "/commit/" + _REV, self.commit),
            ("POST", api + "/paths-info/" + _REV, self.paths_info),
            ("GET", api + "/tree/" + _REV + r"(?:/(?P<path>.*))?", self.tree),
            ("GET", api + r"(?:/revision/" + _REV + ")?", self.info),
            ("POST", r"/(?P<prefix>datasets/|spaces/)?" + _REPO + r"\.git/info/lfs/objects/batch", self.lfs_batch),
            ("PUT", r"/_lfs/(?P<oid>[0-9a-f]{64})", self.lfs_put),
            ("GET", r"/(?P<prefix>datasets/|spaces/)?" + _REPO + "/resolve/" + _REV + "/(?P<path>.+)", self.resolve),
            ("HEAD", r"/(?P<prefix>datasets/|spaces/)?" + _REPO + "/resolve/" + _REV + "/(?P<path>.+)", self.resolve),
        ]
        for m, pattern, fn in table:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                if "prefix" in match.groupdict():
                    args["type"] = {"datasets/": "dataset", "spaces/": "space"}.get(match.group("prefix"), "model")
                    args.pop("prefix", None)
                return fn(h, query=query, method=method, **args)
        return None

    def _repo(self, repo_type, repo_id):
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            return None, _error(404, "RepoNotFound", f"Repository Not Found for url: {repo_id}")
        return repo, None

    def _snapshot(self, repo_type, repo_id, rev):
        """-> ((sha, files, lfs), None) or (None, error response)."""
        r, err = self._repo(repo_type, repo_id)
        if err:
            return None, err
        snap = r.at(rev or "main")
        if snap is None:
            return None, _error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return snap, None

    def whoami(self, h, **_):
        return _json({"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "dummy", "role": "write"}}})

    def create_repo(self, h, **_):
        body = h.json()
        repo_type = body.get("type") or "model"
        name = body["name"]
        repo_id = f"{body.get('organization') or self.user}/{name}"
        url = f"{self.endpoint}/{PREFIXES[repo_type]}{repo_id}"
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return _json({"error": "You already created this repo", "url": url}, 409)
            self.repos[(repo_type, repo_id)] = Repo(repo_id, repo_type)
        return _json({"url": url, "name": repo_id, "id": repo_id})

    def validate_yaml(self, h, **_):
        h.json()
        return _json({"errors": [], "warnings": []})

    def preupload(self, h, type, repo, rev, **_):
        r, err = self._repo(type, repo)
        if err:
            return err
        files = []
        for f in h.json()["files"]:
            lfs = self.lfs_threshold is not None and f["size"] >= self.lfs_threshold
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": _git_oid(r.files[f["path"]]) if f["path"] in r.files else None})
        return _json({"files": files, "commitOid": r.sha})

    def lfs_batch(self, h, type, repo, **_):
        r, err = self._repo(type, repo)
        if err:
            return err
        objects = []
        for obj in h.json()["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.blobs:           # already stored: no actions, the client skips it
                entry["actions"] = {"upload": {"href": f"{self.endpoint}/_lfs/{obj['oid']}", "header": {}}}
            objects.append(entry)
        return _json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                     headers={"Content-Type": "application/vnd.git-lfs+json"})

    def lfs_put(self, h, oid, **_):
        data = h.body()
        if hashlib.sha256(data).hexdigest() != oid:
            return _error(400, "BadRequest", "sha256 mismatch")
        with self.lock:
            self.blobs[oid] = data
        return 200, {}, b""

    def commit(self, h, type, repo, rev, **_):
        r, err = self._repo(type, repo)
        if err:
            return err
        lines = [json.loads(line) for line in h.body().splitlines() if line.strip()]
        with self.lock:
            if rev != "main":
                return _error(400, "BadRequest", "the fake hub has one branch, main")
            files, lfs = dict(r.files), set(r.lfs)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                    lfs.discard(value["path"])
                elif key == "lfsFile":
                    if value["oid"] not in self.blobs:
                        return _error(422, "BadRequest", f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = self.blobs[value["oid"]]
                    lfs.add(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: b for p, b in files.items() if not p.startswith(prefix)}
                elif key != "header":
                    return _error(400, "BadRequest", f"unknown commit operation {key}")
            sha = hashlib.sha1(f"{r.sha}{time.time_ns()}{sorted(files)}".encode()).hexdigest()
            r.snapshots[sha] = (files, frozenset(lfs & set(files)))
            r.commits.append(sha)
        return _json({"commitOid": sha, "commitUrl": f"{self.endpoint}/{PREFIXES[type]}{repo}/commit/{sha}",
                      "pullRequestUrl": None, "success": True})

    @staticmethod
    def _entry(snap, path, expand=True):
        sha, files, lfs = snap
        data = files[path]
        entry = {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
        if path in lfs:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        if expand:
            entry["lastCommit"] = {"id": sha, "title": "commit", "date": "2025-01-01T00:00:00.000Z"}
        return entry

    def tree(self, h, type, repo, rev, path="", query=None, **_):
        snap, err = self._snapshot(type, repo, rev)
        if err:
            return err
        prefix = path.rstrip("/") + "/" if path else ""
        recursive = (query or {}).get("recursive", ["false"])[0].lower() in ("1", "true")
        out, dirs = [], set()
        for p in sorted(snap[1]):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix):]
            if "/" in rest:
                d = prefix + rest.split("/")[0]
                if d not in dirs:
                    dirs.add(d)
                    out.append({"type": "directory", "path": d, "oid": _git_oid(d.encode()), "size": 0})
                if not recursive:
                    continue
            out.append(self._entry(snap, p, expand=False))
        if prefix and not out:
            return _error(404, "EntryNotFound", f"{path} does not exist on main")
        return _json(out)

    def paths_info(self, h, type, repo, rev, **_):
        snap, err = self._snapshot(type, repo, rev)
        if err:
            return err
        body = h.form_or_json()
        paths = body.get("paths", [])
        paths = [paths] if isinstance(paths, str) else paths
        return _json([self._entry(snap, p) for p in paths if p in snap[1]])

    def info(self, h, type, repo, rev=None, **_):
        snap, err = self._snapshot(type, repo, rev)
        if err:
            return err
        return _json({"id": repo, "_id": hashlib.md5(repo.encode()).hexdigest()[:24], "modelId": repo,
                      "author": repo.split("/")[0], "sha": snap[0], "private": False, "disabled": False,
                      "gated": False, "downloads": 0, "likes": 0, "tags": [], "library_name": "transformers",
                      "lastModified": "2025-01-01T00:00:00.000Z", "createdAt": "2025-01-01T00:00:00.000Z",
                      "siblings": [{"rfilename": p} for p in sorted(snap[1])]})

    def resolve(self, h, type, repo, rev, path, method, **_):
        snap, err = self._snapshot(type, repo, rev)
        if err:
            return err
        sha, files, lfs = snap
        if path not in files:
            return _error(404, "EntryNotFound", f"Entry not found: {path}", {"X-Repo-Commit": sha})
        data = files[path]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{_git_oid(data)}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if path in lfs:
            headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                            "X-Linked-Size": str(len(data))})
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if rng and method == "GET":
            start = int(rng.group(1))
            end = int(rng.group(2)) if rng.group(2) else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return 206, headers, data[start:end + 1]
        return 200, headers, data


class _Handler(BaseHTTPRequestHandler):
    hub = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):                      # quiet
        pass

    def body(self):
        if not hasattr(self, "_body"):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                self._body = b"".join(parts)
            else:
                self._body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return self._body

    def json(self):
        return json.loads(self.body() or b"{}")

    def form_or_json(self):
        raw = self.body()
        if "json" in self.headers.get("Content-Type", ""):
            return json.loads(raw or b"{}")
        form = parse_qs(raw.decode())
        return {"paths": form.get("paths", []), "expand": form.get("expand", ["false"])[0]}

    def _handle(self, method):
        self.__dict__.pop("_body", None)                # one handler serves a keep-alive connection
        url = urlsplit(self.path)
        self.hub.log.append((method, url.path))
        try:
            result = self.hub.route(self, method, url.path, parse_qs(url.query))
        except Exception as e:                          # a bug here must not hang the client
            result = _error(500, "InternalError", f"{type(e).__name__}: {e}")
        if result is None:
            self.hub.unknown.append((method, self.path))
            result = _error(404, "NotFound", f"fake hub: no route for {method} {url.path}")
        if method in ("POST", "PUT"):
            self.body()                                 # drain the request before answering
        status, headers, data = result
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")


def _json(obj, status=200, headers=None):
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


def _error(status, code, message, headers=None):
    return _json({"error": message}, status, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})


def _git_oid(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
