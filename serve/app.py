"""The synth2 service: generation jobs over HTTP.

    POST /v1/jobs                       a job spec (JSON or YAML) -> 202 {id, status, ...}
    GET  /v1/jobs                       jobs, newest first (?status=, ?mine=true, ?limit=)
    GET  /v1/jobs/{id}                  status, per-stage progress, counts
    POST /v1/jobs/{id}/cancel           stop it; its finished shards stay valid
    GET  /v1/jobs/{id}/logs             the job's log (?tail=N lines)
    GET  /v1/jobs/{id}/manifest         the shard manifest (names, sizes, sha256)
    GET  /v1/jobs/{id}/shards/{name}    one shard; range requests; ETag = its sha256
    GET  /v1/jobs/{id}/report           the job's report
    GET  /v1/consumers                  registered consumers (the other papers' models) and their params schema
    POST /v1/consumers/{name}/runs      params (or a full `kind: consumer` spec) -> 202 {id, ...}
    GET  /v1/consumers/{name}/runs      that consumer's runs, newest first (?status=, ?mine=true, ?limit=)
    GET  /v1/consumers/{name}/runs/{id}               status, progress, params, summary, file links
    POST /v1/consumers/{name}/runs/{id}/cancel        GET .../logs
    GET  /v1/consumers/{name}/runs/{id}/files[/{path}] the files the run wrote (JSON, PNG)
    GET  /healthz                       liveness (no key needed)
    GET  /                              the dashboard (a static page; it calls the API with your key)

Every /v1 route needs `Authorization: Bearer <key>`. Errors are JSON `{"detail": ...}`.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import os
import posixpath
import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from pipeline.spec import JobSpec
from pipeline.storage import Store
from serve.jobs import JobManager, Refused
from serve.settings import Settings, hash_key
from serve.store import STATUSES, JobStore
from synth2 import __version__

log = logging.getLogger("synth2.serve")
STATIC = Path(__file__).parent / "static"
# The dashboard loads nothing from elsewhere, and reports open in a sandboxed frame.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; frame-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'")
bearer = HTTPBearer(auto_error=False, description="An API key from SYNTH2_API_KEYS")


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds") if t else None


class BodyLimit:
    """413 for request bodies over `limit` bytes, by Content-Length or by counting a streamed body."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = JSONResponse({"detail": f"request body over the limit of {self.limit} bytes"}, status_code=413)
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_big(scope, receive, send)
        seen = 0
        started = False

        async def counted():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise _TooBig
            return msg

        async def tracked_send(msg):
            nonlocal started
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        try:
            await self.app(scope, counted, tracked_send)
        except _TooBig:
            if not started:
                await too_big(scope, receive, send)


class _TooBig(Exception):
    pass


class ShardResponse(FileResponse):
    """Starlette's FileResponse (ranges, If-Range) in 1 MiB pieces instead of 64 KiB: a quarter of the
    service's CPU per GB served (bench/serve_load.py)."""

    chunk_size = 1 << 20


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    keys = settings.key_hashes()
    if not keys:
        raise RuntimeError("no API keys: set SYNTH2_API_KEYS (comma-separated keys, or sha256:<hex> digests)")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = JobStore(settings.db_url)
        manager = JobManager(settings, store)
        await run_in_threadpool(manager.start)
        app.state.store, app.state.manager = store, manager
        log.info("synth2 service: data in %s, store %s, runner %s, %d key(s)", settings.data_dir,
                 store.engine.url.render_as_string(hide_password=True), manager.runner.kind, len(keys))
        yield
        manager.shutdown()
        store.close()

    app = FastAPI(title="synth2", version=__version__, lifespan=lifespan, summary=__doc__.splitlines()[0],
                  description="Synthetic image-text training data as a service (Synth², Sharifzadeh et al. 2024).")
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    # ------------------------------------------------------------ errors: JSON, never a traceback

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        ref = secrets.token_hex(4)
        log.error("internal error %s on %s %s", ref, request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error (reference {ref}); the service log has the details"},
                            status_code=500)

    # ------------------------------------------------------------ auth

    def key_id(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        if cred is None or cred.scheme.lower() != "bearer":
            raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`",
                                headers={"WWW-Authenticate": "Bearer"})
        kid = keys.get(hash_key(cred.credentials))
        if kid is None:
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return kid

    def manager(request: Request) -> JobManager:
        return request.app.state.manager

    def job_or_404(job_id: str, request: Request) -> dict:
        job = request.app.state.store.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    # ------------------------------------------------------------ routes

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request):
        """Liveness and the database's health; no key needed."""
        try:
            request.app.state.store.ping()
        except Exception:  # noqa: BLE001
            return JSONResponse({"status": "degraded", "database": "unreachable", "version": __version__}, 503)
        return {"status": "ok", "database": "ok", "version": __version__}

    @app.get("/", include_in_schema=False)
    def dashboard():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"),
                            headers={"cache-control": "no-cache", "content-security-policy": CSP})

    spec_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": JobSpec.model_json_schema()},
        "application/yaml": {"schema": {"type": "string"}}}}}

    @app.post("/v1/jobs", status_code=202, tags=["jobs"], openapi_extra=spec_body)
    async def submit(request: Request, kid: str = Depends(key_id)):
        """Queue a generation job. The body is a job spec (`synth2 spec schema`), as JSON or YAML."""
        data = await _body(request)
        job = await run_in_threadpool(manager(request).submit, data, kid)
        view = job_view(job, detail=False)
        return JSONResponse(view, status_code=202, headers={"Location": view["links"]["self"]})

    @app.get("/v1/jobs", tags=["jobs"])
    def list_jobs(request: Request, kid: str = Depends(key_id), status: str | None = Query(None),
                  mine: bool = False, limit: int = Query(50, ge=1, le=1000)):
        """Jobs, newest first, each with its progress."""
        if status is not None and status not in STATUSES:
            raise HTTPException(422, [f"status: must be one of {', '.join(STATUSES)} (got {status!r})"])
        jobs = request.app.state.store.list(status=status, key_id=kid if mine else None, limit=limit)
        return {"jobs": [job_view(j) for j in jobs]}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"])
    def get_job(job_id: str, request: Request, kid: str = Depends(key_id)):
        """Status, per-stage progress, counts and (when finished) the job's stats."""
        return job_view(job_or_404(job_id, request), detail=True)

    @app.post("/v1/jobs/{job_id}/cancel", status_code=202, tags=["jobs"])
    def cancel(job_id: str, request: Request, kid: str = Depends(key_id)):
        """Stop the job. Shards already in its manifest stay valid; submitting the same spec resumes it."""
        job = job_or_404(job_id, request)
        if job["key_id"] != kid:
            raise HTTPException(403, "only the API key that submitted a job can cancel it")
        if job["status"] not in ("PENDING", "RUNNING"):
            raise HTTPException(409, f"job {job_id} is already {job['status']}")
        return job_view(manager(request).cancel(job_id))

    @app.get("/v1/jobs/{job_id}/logs", tags=["jobs"], response_class=PlainTextResponse)
    def logs(job_id: str, request: Request, kid: str = Depends(key_id), tail: int | None = Query(None, ge=0, le=100_000)):
        """The job's log as text (its last `tail` lines)."""
        return PlainTextResponse(manager(request).logs(job_or_404(job_id, request), tail))

    @app.get("/v1/jobs/{job_id}/manifest", tags=["shards"])
    def manifest(job_id: str, request: Request, kid: str = Depends(key_id)):
        """The job's shard manifest: every finished shard with its size and sha256."""
        m = _manifest(job_or_404(job_id, request))
        if m is None:
            raise HTTPException(404, f"job {job_id} has no finished shard yet")
        return m

    @app.get("/v1/jobs/{job_id}/shards/{name}", tags=["shards"],
             responses={206: {"description": "a byte range"}, 304: {"description": "unchanged (If-None-Match)"},
                        416: {"description": "range not satisfiable"}})
    def shard(job_id: str, name: str, request: Request, kid: str = Depends(key_id)):
        """One shard of the manifest. Supports `Range`, `If-Range`, `If-None-Match`; the ETag is its sha256."""
        job = job_or_404(job_id, request)
        m = _manifest(job)
        entry = next((s for s in (m or {}).get("shards", []) if s["name"] == name), None)
        if entry is None:  # only names listed in the manifest: nothing else under the job is reachable
            raise HTTPException(404, f"job {job_id} has no shard {name!r} in its manifest")
        etag = f'"{entry["sha256"]}"'
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers={"etag": etag})
        store = Store(job["output_dir"])
        headers = {"etag": etag, "cache-control": "private, max-age=31536000, immutable"}
        if store.local:
            root = os.path.realpath(store.root)
            path = os.path.join(root, name)
            if os.path.islink(path) or os.path.dirname(os.path.realpath(path)) != root or not os.path.isfile(path):
                raise HTTPException(404, f"shard {name!r} is not a regular file in the job's output")
            return ShardResponse(path, media_type="application/x-tar", filename=name, headers=headers)
        return _remote_file(store, name, entry["bytes"], request, headers)

    @app.get("/v1/jobs/{job_id}/report", tags=["jobs"], response_class=HTMLResponse)
    def report(job_id: str, request: Request, kid: str = Depends(key_id), format: str = Query("html", pattern="^(html|json)$")):
        """The job's report: `report.html` (self-contained), or `?format=json`."""
        job = job_or_404(job_id, request)
        store = Store(job["output_dir"])
        fname = f"report.{format}"
        if not store.exists(fname):
            raise HTTPException(404, f"job {job_id} has no {fname} yet (it is written when the job finishes)")
        data = store.read_bytes(fname)
        return Response(data, media_type="text/html; charset=utf-8" if format == "html" else "application/json")

    _consumer_routes(app, key_id, manager)
    return app


async def _body(request: Request) -> Any:
    """The request body as JSON or (Content-Type: application/yaml) YAML; 422 when it is neither."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "application/json")
    try:
        return yaml.safe_load(raw) if "yaml" in ctype else json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as e:
        kind = "YAML" if "yaml" in ctype else "JSON"
        raise HTTPException(422, [f"(body): not valid {kind}: {str(e).splitlines()[0]}"]) from None


# ---------------------------------------------------------------- consumer runs


def _consumer_routes(app: FastAPI, key_id, manager) -> None:
    """Consumer runs: jobs of kind `consumer` (consumers/registry.py), under /v1/consumers/{name}/runs."""
    from consumers import registry

    def consumer_or_404(name: str) -> registry.Consumer:
        try:
            return registry.get(name)
        except registry.UnknownConsumer as e:
            raise HTTPException(404, str(e)) from None

    def run_or_404(name: str, run_id: str, request: Request) -> dict:
        consumer_or_404(name)
        job = request.app.state.store.get(run_id)
        if job is None or _consumer_of(job) != name:
            raise HTTPException(404, f"no {name} run {run_id!r}")
        return job

    params_body = {"requestBody": {"required": False, "content": {
        "application/json": {"schema": {"type": "object", "description": "The consumer's params (GET /v1/consumers "
                                        "lists each one's schema), or a whole job spec of kind `consumer`."}},
        "application/yaml": {"schema": {"type": "string"}}}}}

    @app.get("/v1/consumers", tags=["consumers"])
    def list_consumers(kid: str = Depends(key_id)):
        """The registered consumers, each with the JSON schema of its params."""
        return {"consumers": [c.info() | {"links": {"runs": f"/v1/consumers/{c.name}/runs"}} for c in registry.consumers()]}

    @app.get("/v1/consumers/{name}", tags=["consumers"])
    def get_consumer(name: str, kid: str = Depends(key_id)):
        """One consumer and the JSON schema of its params."""
        c = consumer_or_404(name)
        return c.info() | {"links": {"runs": f"/v1/consumers/{c.name}/runs"}}

    @app.post("/v1/consumers/{name}/runs", status_code=202, tags=["consumers"], openapi_extra=params_body)
    async def submit_run(name: str, request: Request, kid: str = Depends(key_id)):
        """Queue a run of consumer NAME. The body is its params (JSON or YAML), or a whole job spec of kind
        `consumer`. Invalid params are a 422 naming `consumer.params.<field>`."""
        consumer_or_404(name)
        data = await _body(request)
        if isinstance(data, dict) and "version" in data and "consumer" in data:  # a whole spec
            if data.get("kind", "consumer") != "consumer":
                raise HTTPException(422, [f"kind: must be 'consumer' on this route (got {data.get('kind')!r})"])
            section = data.get("consumer")
            if isinstance(section, dict) and section.get("name") != name:
                raise HTTPException(422, [f"consumer.name: must be {name!r}, the consumer in the URL "
                                          f"(got {section.get('name')!r})"])
            spec = {**data, "kind": "consumer"}
        elif data is None or isinstance(data, dict):
            spec = {"version": 1, "name": name, "kind": "consumer", "consumer": {"name": name, "params": data or {}}}
        else:
            raise HTTPException(422, [f"(body): the params of consumer {name!r} as an object (got {type(data).__name__})"])
        job = await run_in_threadpool(manager(request).submit, spec, kid)
        view = run_view(job)
        return JSONResponse(view, status_code=202, headers={"Location": view["links"]["self"]})

    @app.get("/v1/consumers/{name}/runs", tags=["consumers"])
    def list_runs(name: str, request: Request, kid: str = Depends(key_id), status: str | None = Query(None),
                  mine: bool = False, limit: int = Query(50, ge=1, le=1000)):
        """Runs of consumer NAME, newest first."""
        consumer_or_404(name)
        if status is not None and status not in STATUSES:
            raise HTTPException(422, [f"status: must be one of {', '.join(STATUSES)} (got {status!r})"])
        needle = '"consumer": {"name": ' + json.dumps(name) + ","  # specs are stored as JSON with sorted keys
        jobs = request.app.state.store.list(status=status, key_id=kid if mine else None, limit=limit, spec_contains=needle)
        return {"runs": [run_view(j) for j in jobs if _consumer_of(j) == name]}

    @app.get("/v1/consumers/{name}/runs/{run_id}", tags=["consumers"])
    def get_run(name: str, run_id: str, request: Request, kid: str = Depends(key_id)):
        """Status, progress, params and (when it has finished) the run's summary and files."""
        return run_view(run_or_404(name, run_id, request), detail=True)

    @app.post("/v1/consumers/{name}/runs/{run_id}/cancel", status_code=202, tags=["consumers"])
    def cancel_run(name: str, run_id: str, request: Request, kid: str = Depends(key_id)):
        """Stop the run (only the API key that submitted it may)."""
        job = run_or_404(name, run_id, request)
        if job["key_id"] != kid:
            raise HTTPException(403, "only the API key that submitted a run can cancel it")
        if job["status"] not in ("PENDING", "RUNNING"):
            raise HTTPException(409, f"run {run_id} is already {job['status']}")
        return run_view(manager(request).cancel(run_id))

    @app.get("/v1/consumers/{name}/runs/{run_id}/logs", tags=["consumers"], response_class=PlainTextResponse)
    def run_logs(name: str, run_id: str, request: Request, kid: str = Depends(key_id),
                 tail: int | None = Query(None, ge=0, le=100_000)):
        """The run's log as text (its last `tail` lines)."""
        return PlainTextResponse(manager(request).logs(run_or_404(name, run_id, request), tail))

    @app.get("/v1/consumers/{name}/runs/{run_id}/files", tags=["consumers"])
    def run_files(name: str, run_id: str, request: Request, kid: str = Depends(key_id)):
        """The files in the run's output directory (regular files only), with their sizes."""
        job = run_or_404(name, run_id, request)
        base = f"/v1/consumers/{name}/runs/{run_id}/files/"
        return {"files": [{"name": f, "bytes": n, "url": base + quote(f)} for f, n in _output_files(job["output_dir"])]}

    @app.get("/v1/consumers/{name}/runs/{run_id}/files/{path:path}", tags=["consumers"])
    def run_file(name: str, run_id: str, path: str, request: Request, kid: str = Depends(key_id)):
        """One file the run wrote (e.g. its results JSON and PNG plots). Only regular files inside the run's
        output directory, reached without a symbolic link."""
        job = run_or_404(name, run_id, request)
        parts = path.split("/")
        missing = HTTPException(404, f"run {run_id} has no file {path!r}")
        if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
            raise missing
        store = Store(job["output_dir"])
        media = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        # A file a consumer wrote is data: never sniffed, never a page with this origin's rights.
        headers = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox", "cache-control": "no-cache"}
        if store.local:
            root = os.path.realpath(store.root)
            full = os.path.join(root, *parts)
            if os.path.realpath(full) != full or not os.path.isfile(full):  # a link anywhere on the way: refused
                raise missing
            return FileResponse(full, media_type=media, headers=headers)
        if not store.fs.isfile(store.path(*parts)):
            raise missing
        return Response(store.read_bytes(*parts), media_type=media, headers=headers)


def _consumer_of(job: dict) -> str | None:
    spec = job.get("spec") or {}
    return (spec.get("consumer") or {}).get("name") if spec.get("kind") == "consumer" else None


def _output_files(output_dir: str) -> list[tuple[str, int]]:
    """(relative name, bytes) of every regular file under a run's output, not following links."""
    store = Store(output_dir)
    if not store.local:
        if not store.exists():
            return []
        return sorted((posixpath.relpath(p, store.root), int(info.get("size") or 0))
                      for p, info in store.fs.find(store.root, detail=True).items() if info.get("type") == "file")
    root = os.path.realpath(store.root)
    out = []
    for d, _dirs, files in os.walk(root):  # os.walk does not descend into linked directories
        for f in files:
            full = os.path.join(d, f)
            if not os.path.islink(full) and os.path.isfile(full) and not f.endswith(".tmp"):
                out.append((os.path.relpath(full, root).replace(os.sep, "/"), os.path.getsize(full)))
    return sorted(out)


def run_view(job: dict, detail: bool = False) -> dict:
    """A job view for a consumer run: its consumer, params, and (detail) summary and files."""
    name, jid = _consumer_of(job), job["id"]
    view = job_view(job, detail=detail)
    base = f"/v1/consumers/{name}/runs/{jid}"
    view["consumer"] = name
    view["params"] = job["spec"]["consumer"]["params"]
    view["links"] = {"self": base, "logs": f"{base}/logs", "cancel": f"{base}/cancel", "files": f"{base}/files",
                     "job": f"/v1/jobs/{jid}"}
    if detail:
        view.pop("counts", None)
        result = _read_json(job, "summary.json") if job["status"] == "SUCCEEDED" else None
        view["summary"] = (result or {}).get("summary")
        view["seconds"] = (result or {}).get("seconds")
        view["files"] = {f: f"{base}/files/{quote(f)}" for f in (result or {}).get("files", [])}
    return view


def _manifest(job: dict) -> dict | None:
    return _read_json(job, "manifest.json")


def _read_json(job: dict, name: str) -> Any:
    store = Store(job["output_dir"])
    try:
        return store.read_json(name) if store.exists(name) else None
    except (OSError, ValueError):  # being replaced right now
        return None


def job_view(job: dict, detail: bool = False) -> dict:
    jid = job["id"]
    progress = _read_json(job, "progress.json") if job["started_at"] else None
    if progress and (progress.get("updated_at") or 0) < job["started_at"]:
        progress = None  # left by an earlier run of the same spec; this run has not written its own yet
    view = {
        "id": jid, "name": job["name"], "status": job["status"], "key_id": job["key_id"],
        "spec_hash": job["spec_hash"], "runner": job["runner"], "attempts": job["attempts"],
        "created_at": _iso(job["created_at"]), "started_at": _iso(job["started_at"]),
        "finished_at": _iso(job["finished_at"]), "error": job["error"], "message": job["message"],
        "progress": _stages((progress or {}).get("stages", {}), job["status"]),
        "links": {"self": f"/v1/jobs/{jid}", "logs": f"/v1/jobs/{jid}/logs", "manifest": f"/v1/jobs/{jid}/manifest",
                  "report": f"/v1/jobs/{jid}/report", "cancel": f"/v1/jobs/{jid}/cancel"},
    }
    if job["started_at"] and job["status"] in ("RUNNING", "SUCCEEDED", "FAILED", "STOPPED"):
        end = job["finished_at"] or time.time()
        view["elapsed_s"] = round(end - job["started_at"], 1)
    if detail:
        view["counts"] = _read_json(job, "stats.json")
        view["spec"] = job["spec"]
    return view


STAGE_ORDER = ("caption", "score", "select", "synthesize", "embed", "shard")


def _stages(stages: dict, job_status: str) -> dict:
    """Per-stage progress in pipeline order (progress.json keeps them sorted by name); the stages a
    failed or stopped job left unfinished take the job's status."""
    order = sorted(stages, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else len(STAGE_ORDER))
    out = {k: {f: stages[k][f] for f in ("done", "total", "status", "rate_per_s", "shards", "step") if f in stages[k]}
           for k in order}
    if job_status in ("FAILED", "STOPPED"):
        for v in out.values():
            if v.get("status") in ("RUNNING", "PENDING"):
                v["status"] = job_status
    return out


def _remote_file(store: Store, name: str, size: int, request: Request, headers: dict) -> Response:
    """A shard on object storage (fsspec), with single-range support."""
    start, end, status = 0, size - 1, 200
    rng = request.headers.get("range")
    if rng and (request.headers.get("if-range") in (None, headers["etag"])):
        try:
            unit, spec = rng.split("=", 1)
            a, b = spec.split("-", 1)
            if unit.strip() != "bytes" or "," in spec:
                raise ValueError
            start, end = (int(a), min(int(b), size - 1) if b else size - 1) if a else (max(size - int(b), 0), size - 1)
            if start > end or start >= size:
                raise ValueError
            status = 206
        except ValueError:
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})

    def body():
        with store.fs.open(store.path(name), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                block = f.read(min(left, 1 << 20))
                if not block:
                    break
                left -= len(block)
                yield block

    headers = headers | {"accept-ranges": "bytes", "content-length": str(end - start + 1),
                         "content-disposition": f'attachment; filename="{name}"'}
    if status == 206:
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(body(), status_code=status, media_type="application/x-tar", headers=headers)


def app_from_env() -> FastAPI:
    """`uvicorn --factory serve.app:app_from_env`: the app with settings from the environment."""
    return create_app(Settings())
