"""A job's shards: the manifest, and each shard with ranges and ETags."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from serve.deps import Job, key_id
from serve.files import shard_response
from serve.models import Manifest
from serve.routes import errors
from serve.views import manifest as read_manifest

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["shards"], dependencies=[Depends(key_id)], responses=errors(401, 404))


@router.get("/manifest", response_model=Manifest)
def manifest(job: Job):
    """The job's shard manifest: every finished shard with its size and sha256."""
    m = read_manifest(job)
    if m is None:
        raise HTTPException(404, f"job {job['id']} has no finished shard yet")
    return m


@router.get("/shards/{name}", response_class=Response,
            responses={200: {"content": {"application/x-tar": {}}, "description": "the shard"},
                       206: {"content": {"application/x-tar": {}}, "description": "a byte range"},
                       304: {"description": "unchanged (If-None-Match)"}, 416: {"description": "range not satisfiable"}})
def shard(job: Job, name: str, request: Request):
    """One shard of the manifest. Supports `Range`, `If-Range`, `If-None-Match`; the ETag is its sha256."""
    entry = next((s for s in (read_manifest(job) or {}).get("shards", []) if s["name"] == name), None)
    if entry is None:  # only names listed in the manifest: nothing else under the job is reachable
        raise HTTPException(404, f"job {job['id']} has no shard {name!r} in its manifest")
    return shard_response(job, entry, request)
