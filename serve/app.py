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
    GET  /  and  /docs                  the dashboard and Swagger UI (static; they call the API with your key)

Every /v1 route needs `Authorization: Bearer <key>`. Errors are JSON `{"detail": ...}`. The routes live in
serve/routes/*.py; what a spec may reach is serve/policy.py.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from pipeline.version import __version__
from serve import errors, spec_schema
from serve.jobs import JobManager
from serve.middleware import BodyLimit, SecurityHeaders
from serve.routes import consumers, health, jobs, runs, shards, ui
from serve.settings import Settings
from serve.store import JobStore

log = logging.getLogger("synth2.serve")


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
                  description="Synthetic image-text training data as a service (Synth², Sharifzadeh et al. 2024).",
                  docs_url=None, redoc_url=None)
    app.state.settings, app.state.keys = settings, keys
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    errors.install(app)
    routers = [m.router for m in (health, ui, jobs, shards, consumers, runs)]
    for router in routers:
        app.include_router(router)
    app.state.route_table = [(r.path_regex, r.methods) for router in routers for r in router.routes]  # 405's Allow
    app.mount("/static/swagger-ui", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui")
    app.mount("/static", StaticFiles(directory=ui.STATIC), name="static")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = spec_schema.add_to(schema)
        return app.openapi_schema

    app.openapi = openapi
    return app


def app_from_env() -> FastAPI:
    """`uvicorn --factory serve.app:app_from_env`: the app with settings from the environment."""
    return create_app(Settings())
