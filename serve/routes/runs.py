"""Consumer runs: jobs of kind `consumer`, under /v1/consumers/{name}/runs."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from serve.deps import DB, Config, Key, Manager, key_id, own_key_filter, visible
from serve.files import output_file, output_files
from serve.jobs import consumer_spec, own_job_sources
from serve.models import FileList, RunList, RunView, Status
from serve.routes import TEXT, errors
from serve.routes.consumers import Consumer
from serve.routes.jobs import accepted, read_spec
from serve.spec_schema import PARAMS_BODY
from serve.views import consumer_of, run_view

router = APIRouter(prefix="/v1/consumers/{name}/runs", tags=["consumers"], dependencies=[Depends(key_id)],
                   responses=errors(401, 404))


def find_run(consumer: Consumer, run_id: str, store: DB, kid: Key, settings: Config) -> dict:
    job = store.get(run_id)
    if not visible(job, kid, settings) or consumer_of(job) != consumer.name:
        raise HTTPException(404, f"no {consumer.name} run {run_id!r}")
    return job


Run = Annotated[dict, Depends(find_run)]


@router.post("", status_code=202, response_model=RunView, openapi_extra=PARAMS_BODY,
             responses=errors(409, 413, 422, 429) | {202: {"headers": {"Location": {"schema": {"type": "string"}}}}})
async def submit_run(consumer: Consumer, request: Request, kid: Key, manager: Manager, settings: Config, store: DB):
    """Queue a run: the body is its params (JSON or YAML) or a whole `kind: consumer` spec; 422 names the field."""
    spec = consumer_spec(consumer.name, await read_spec(request, settings, empty={}))
    spec = own_job_sources(spec, str(request.base_url), lambda jid: j if visible(j := store.get(jid), kid, settings)
                           else None)  # this service's job URLs: read from its output directory, no key needed
    job = await run_in_threadpool(manager.submit, spec, kid)
    return accepted(run_view(job))


@router.get("", response_model=RunList, response_model_exclude_unset=True, responses=errors(422))
def list_runs(consumer: Consumer, kid: Key, store: DB, settings: Config, status: Status | None = None,
              mine: bool = False, limit: int = Query(50, ge=1, le=1000)):
    """Runs of consumer NAME, newest first."""
    needle = '"consumer": {"name": ' + json.dumps(consumer.name) + ","  # specs are stored as JSON with sorted keys
    jobs = store.list(status=status, key_id=own_key_filter(kid, mine, settings), limit=limit, spec_contains=needle)
    return {"runs": [run_view(j) for j in jobs if consumer_of(j) == consumer.name]}


@router.get("/{run_id}", response_model=RunView, response_model_exclude_unset=True)
def get_run(run: Run):
    """Status, progress, params and (when it has finished) the run's summary and files."""
    return run_view(run, detail=True)


@router.post("/{run_id}/cancel", status_code=202, response_model=RunView, response_model_exclude_unset=True,
             responses=errors(403, 409))
def cancel_run(run: Run, kid: Key, manager: Manager):
    """Stop the run (only the API key that submitted it may)."""
    if run["key_id"] != kid:
        raise HTTPException(403, "only the API key that submitted a run can cancel it")
    if run["status"] not in ("PENDING", "RUNNING"):
        raise HTTPException(409, f"run {run['id']} is already {run['status']}")
    return run_view(manager.cancel(run["id"]))


@router.get("/{run_id}/logs", responses=errors(422) | TEXT)
def run_logs(run: Run, manager: Manager, tail: int | None = Query(None, ge=0, le=100_000)):
    """The run's log as text (its last `tail` lines)."""
    return PlainTextResponse(manager.logs(run, tail))


@router.get("/{run_id}/files", response_model=FileList)
def run_files(run: Run, consumer: Consumer):
    """The files in the run's output directory (regular files only), with their sizes."""
    base = f"/v1/consumers/{consumer.name}/runs/{run['id']}/files/"
    return {"files": [{"name": f, "bytes": n, "url": base + quote(f)} for f, n in output_files(run["output_dir"])]}


@router.get("/{run_id}/files/{path:path}", responses={200: {"content": {"application/octet-stream": {}}}})
def run_file(run: Run, path: str):
    """One file the run wrote (its results JSON and PNG plots); never through a symbolic link."""
    return output_file(run, path)
