"""Fixtures for the service: a TestClient app, and a real uvicorn process on loopback."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from serve.local import LocalService

KEY, OTHER_KEY = "test-key-0123456789", "other-key-9876543210"


@dataclass
class Service(LocalService):
    """A `synth2 serve` process on 127.0.0.1 with the tests' keys and roots; jobs run inline."""

    roots: str = ""  # SYNTH2_MODEL_ROOTS and SYNTH2_DATA_ROOTS (the tests' worlds and models live in pytest's tmp)

    @property
    def defaults(self) -> dict:
        roots = self.roots or str(self.data_dir.parent)
        return {"SYNTH2_API_KEYS": f"{KEY},{OTHER_KEY}", "SYNTH2_POLL_SECONDS": "0.2", "SYNTH2_API_KEY": KEY,
                "SYNTH2_MODEL_ROOTS": roots, "SYNTH2_DATA_ROOTS": roots,
                # jobs run their stages in their own process: no Ray start-up per job (tests that need
                # the Ray path set SYNTH2_JOB_EXECUTOR=ray or RAY_ADDRESS)
                "SYNTH2_JOB_EXECUTOR": "inline"}

    def client(self, key: str = KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def roots_for(tmp_path_factory) -> str:
    """Where the tests' worlds and models live: pytest's tmp, and a reused SYNTH2_TEST_WORLD."""
    return ",".join([str(tmp_path_factory.getbasetemp())] + ([os.environ["SYNTH2_TEST_WORLD"]]
                                                             if os.environ.get("SYNTH2_TEST_WORLD") else []))


@pytest.fixture
def service(tmp_path, tmp_path_factory):
    svc = Service(tmp_path / "data", roots=roots_for(tmp_path_factory))
    svc.data_dir.mkdir()
    yield svc
    svc.stop()


def job_body(world: Path, **overrides) -> dict:
    """The demo job cut down to a tiny world, as a POST /v1/jobs body."""
    from tests.conftest import world_spec

    return world_spec(world, "/unused", **overrides).model_dump(mode="json")


def wait_for(client: httpx.Client, job_id: str, statuses: tuple[str, ...], timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s: {job}")
