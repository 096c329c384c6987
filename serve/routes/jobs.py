"""Generation jobs: submit, list, follow, cancel, logs, report."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from contracts.storage import Store
from serve.deps import DB, Config, Job, Key, Manager, key_id, own_key_filter
from serve.models import JobList, JobView, Status
from serve.parsing import parse_body
from serve.routes import TEXT, errors
from serve.spec_schema import SPEC_BODY
from serve.views import job_view

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(key_id)], responses=errors(401))


async def read_spec(request: Request, settings: Config, empty=None):
    """The request body as JSON or (Content-Type: application/yaml) YAML, parsed in a worker thread;
    `empty` for no body at all."""
    raw = await request.body()
    if empty is not None and not raw.strip():
        return empty
    return await run_in_threadpool(parse_body, raw, request.headers.get("content-type"), settings)


def accepted(view: dict) -> JSONResponse:
    return JSONResponse(view, status_code=202, headers={"Location": view["links"]["self"]})


@router.post("", status_code=202, response_model=JobView, openapi_extra=SPEC_BODY,
             responses=errors(409, 413, 422, 429) | {202: {"headers": {"Location": {"schema": {"type": "string"}}}}})
async def submit(request: Request, kid: Key, manager: Manager, settings: Config):
    """Queue a generation job. The body is a job spec (`synth2 spec schema`), as JSON or YAML."""
    data = await read_spec(request, settings)
    job = await run_in_threadpool(manager.submit, data, kid)
    return accepted(job_view(job))


@router.get("", response_model=JobList, response_model_exclude_unset=True, responses=errors(422))
def list_jobs(kid: Key, store: DB, settings: Config, status: Status | None = None, mine: bool = False,
              limit: int = Query(50, ge=1, le=1000)):
    """Jobs, newest first, each with its progress."""
    jobs = store.list(status=status, key_id=own_key_filter(kid, mine, settings), limit=limit)
    return {"jobs": [job_view(j) for j in jobs]}


@router.get("/{job_id}", response_model=JobView, response_model_exclude_unset=True, responses=errors(404))
def get_job(job: Job):
    """Status, per-stage progress, counts and (when finished) the job's stats."""
    return job_view(job, detail=True)


@router.post("/{job_id}/cancel", status_code=202, response_model=JobView, response_model_exclude_unset=True,
             responses=errors(403, 404, 409))
def cancel(job: Job, kid: Key, manager: Manager):
    """Stop the job. Shards already in its manifest stay valid; submitting the same spec resumes it."""
    if job["key_id"] != kid:
        raise HTTPException(403, "only the API key that submitted a job can cancel it")
    if job["status"] not in ("PENDING", "RUNNING"):
        raise HTTPException(409, f"job {job['id']} is already {job['status']}")
    return job_view(manager.cancel(job["id"]))


@router.get("/{job_id}/logs", responses=errors(404, 422) | TEXT)
def logs(job: Job, manager: Manager, tail: int | None = Query(None, ge=0, le=100_000)):
    """The job's log as text (its last `tail` lines)."""
    return PlainTextResponse(manager.logs(job, tail))


# A report is the job's own page: shown sandboxed (no scripts, no origin), its inline styles only.
REPORT_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


@router.get("/{job_id}/report", responses=errors(404, 422) | {200: {"content": {"text/html": {}, "application/json": {}}}})
def report(job: Job, format: str = Query("html", pattern="^(html|json)$")):
    """The job's report: `report.html` (self-contained), or `?format=json`."""
    store = Store(job["output_dir"])
    fname = f"report.{format}"
    if not store.exists(fname):
        raise HTTPException(404, f"job {job['id']} has no {fname} yet (it is written when the job finishes)")
    media = "text/html; charset=utf-8" if format == "html" else "application/json"
    return Response(store.read_bytes(fname), media_type=media, headers={"content-security-policy": REPORT_CSP})
