"""Service settings, from the environment (or a `.env` file beside the process).

    SYNTH2_DATA_DIR          where the job store, job outputs and logs live      (./synth2-data)
    DATABASE_URL             any SQLAlchemy URL; default sqlite:///{data_dir}/synth2.db
    SYNTH2_OUTPUT_ROOT       where job outputs go (a directory or fsspec URL)   ({data_dir}/jobs)
    SYNTH2_API_KEYS          comma-separated API keys, or `sha256:<hex>` digests of them
    SYNTH2_MAX_RUNNING       jobs that run at once; the rest wait as PENDING     (1)
    SYNTH2_MAX_JOBS_PER_KEY  PENDING + RUNNING jobs one key may hold (429 past it) (4)
    SYNTH2_MAX_BODY_BYTES    largest request body (413 past it)                  (1 MiB)
    SYNTH2_RESUBMIT_ORPHANS  on start-up, requeue jobs whose process died with the service,
                             instead of marking them FAILED (resume makes that safe)  (false)
    SYNTH2_RAY_PYTHON        interpreter for the Ray job entrypoint               (python)
    RAY_ADDRESS              submit jobs to this Ray cluster (JobSubmissionClient); unset:
                             each job runs as a local subprocess with its own local Ray
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTH2_", extra="ignore")

    data_dir: Path = Path("synth2-data")
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "SYNTH2_DATABASE_URL"))
    output_root: str | None = None
    api_keys: str = Field("", repr=False)
    max_running: int = Field(1, ge=1, le=64)
    max_jobs_per_key: int = Field(4, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    resubmit_orphans: bool = False
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "SYNTH2_RAY_ADDRESS"))
    poll_seconds: float = Field(0.5, gt=0, le=60)
    stop_grace_seconds: float = Field(20.0, ge=0, le=600)
    ray_python: str = "python"  # the interpreter a Ray job's entrypoint runs with, on the cluster
    local_threads: int | None = Field(None, ge=1, le=256)  # CPUs a local job's Ray may use

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'synth2.db'}"

    @property
    def outputs(self) -> str:
        return self.output_root or str(self.data_dir / "jobs")

    def key_hashes(self) -> dict[str, str]:
        """sha256 digest → a short, loggable key id. Plain keys are hashed here and never kept."""
        out = {}
        for raw in self.api_keys.split(","):
            raw = raw.strip()
            if not raw:
                continue
            digest = raw.removeprefix("sha256:").lower() if raw.startswith("sha256:") else hash_key(raw)
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError("SYNTH2_API_KEYS: a `sha256:` entry must be 64 hex digits")
            out[digest] = digest[:8]
        return out
