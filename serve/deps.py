"""The routes' dependencies: the caller's key (`Key`), the job manager and store, a job by id."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serve.jobs import JobManager
from serve.settings import Settings, hash_key
from serve.store import JobStore

bearer = HTTPBearer(auto_error=False, description="An API key from SYNTH2_API_KEYS")


def key_id(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
    """The short id of the caller's API key; 401 without a valid one."""
    if cred is None or cred.scheme.lower() != "bearer":
        raise HTTPException(401, "missing API key: send `Authorization: Bearer <key>`",
                            headers={"WWW-Authenticate": "Bearer"})
    kid = request.app.state.keys.get(hash_key(cred.credentials))
    if kid is None:
        raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
    return kid


def _manager(request: Request) -> JobManager:
    return request.app.state.manager


def _store(request: Request) -> JobStore:
    return request.app.state.store


def _settings(request: Request) -> Settings:
    return request.app.state.settings


Key = Annotated[str, Depends(key_id)]
Manager = Annotated[JobManager, Depends(_manager)]
DB = Annotated[JobStore, Depends(_store)]
Config = Annotated[Settings, Depends(_settings)]


def visible(job: dict | None, kid: str, settings: Settings) -> bool:
    """Whether key KID may see JOB (with SYNTH2_PRIVATE_JOBS, only its own)."""
    return job is not None and (not settings.private_jobs or job["key_id"] == kid)


def find_job(job_id: str, store: DB, kid: Key, settings: Config) -> dict:
    job = store.get(job_id)
    if not visible(job, kid, settings):
        raise HTTPException(404, f"no job {job_id!r}")
    return job


Job = Annotated[dict, Depends(find_job)]


def own_key_filter(kid: str, mine: bool, settings: Settings) -> str | None:
    """The key a listing is restricted to: the caller's with ?mine=true or SYNTH2_PRIVATE_JOBS."""
    return kid if mine or settings.private_jobs else None
