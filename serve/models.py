"""Response models: what each route answers, as OpenAPI shows it (the routes return plain dicts)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"]


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Problem(BaseModel):
    """Every error: one message, or (422) one `field: rule (got value)` line per problem."""

    detail: str | list[str]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: Literal["ok", "unreachable"]
    version: str


class StageProgress(Open):
    done: int | None = None
    total: int | None = None
    status: str | None = None
    rate_per_s: float | None = None
    shards: int | None = None
    step: str | None = None


class JobView(Open):
    id: str
    name: str
    status: Status
    key_id: str
    spec_hash: str
    runner: str
    attempts: int
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    message: str | None
    progress: dict[str, StageProgress]
    links: dict[str, str]
    elapsed_s: float | None = None
    counts: dict[str, Any] | None = Field(None, description="The job's stats.json (detail view, when finished).")
    spec: dict[str, Any] | None = Field(None, description="The job's spec, as the service stored it (detail view).")


class JobList(BaseModel):
    jobs: list[JobView]


class RunView(JobView):
    consumer: str
    params: dict[str, Any]
    summary: dict[str, Any] | None = None
    seconds: float | None = None
    files: dict[str, str] | None = None


class RunList(BaseModel):
    runs: list[RunView]


class ShardEntry(Open):
    name: str
    samples: int | None = None
    bytes: int
    sha256: str


class Manifest(Open):
    shards: list[ShardEntry]


class ConsumerInfo(BaseModel):
    name: str
    description: str
    params_schema: dict[str, Any]
    links: dict[str, str]


class ConsumerList(BaseModel):
    consumers: list[ConsumerInfo]


class FileEntry(BaseModel):
    name: str
    bytes: int
    url: str


class FileList(BaseModel):
    files: list[FileEntry]
