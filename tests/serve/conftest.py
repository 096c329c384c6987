"""Fixtures for the service: a TestClient app, and a real uvicorn process on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
KEY, OTHER_KEY = "test-key-0123456789", "other-key-9876543210"


@dataclass
class Service:
    """A `synth2 serve` process on 127.0.0.1, with its data directory and environment."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env_extra: dict = field(default_factory=dict)
    roots: str = ""  # SYNTH2_MODEL_ROOTS and SYNTH2_DATA_ROOTS (the tests' worlds and models live in pytest's tmp)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict:
        roots = self.roots or str(self.data_dir.parent)
        return {**os.environ, "SYNTH2_DATA_DIR": str(self.data_dir), "SYNTH2_API_KEYS": f"{KEY},{OTHER_KEY}",
                "SYNTH2_POLL_SECONDS": "0.2", "SYNTH2_URL": self.url, "SYNTH2_API_KEY": KEY,
                "SYNTH2_MODEL_ROOTS": roots, "SYNTH2_DATA_ROOTS": roots,
                # jobs run their stages in their own process: no Ray start-up per job (tests that need
                # the Ray path set SYNTH2_JOB_EXECUTOR=ray or RAY_ADDRESS)
                "SYNTH2_JOB_EXECUTOR": "inline", **self.env_extra}

    def start(self, timeout: float = 60) -> Service:
        log = open(self.data_dir.parent / f"service-{self.port}.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "synth2.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port)], cwd=ROOT, env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise TimeoutError("the service did not come up")

    def kill(self) -> None:
        """SIGKILL: the service dies without any chance to clean up (jobs it started go on)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

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
