"""`ray start --head` on loopback, then `ray job submit --working-dir . -- python pipeline/run.py`."""

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.shards import Manifest, sha256_file
from tests.conftest import kill_marked_processes, world_spec

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _submit(args: list[str], env: dict, tries: int = 30) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the freshly started head has no job agent yet."""
    for _ in range(tries):
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode == 0 or "No available agent" not in r.stdout + r.stderr:
            return r
        time.sleep(2.0)
    return r


@pytest.fixture
def ray_head(tmp_path_factory):
    temp = tmp_path_factory.mktemp("rayhead")
    marker = secrets.token_hex(8)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "SYNTH2_TEST_RAY_HEAD": marker}
    port, dash = _free_port(), _free_port()
    cmd = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=2", "--include-dashboard=true",
           f"--temp-dir={temp}", "--disable-usage-stats"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    yield f"http://127.0.0.1:{dash}", env
    # Stop only this head (not a Ray this test session started in process): its processes
    # inherited the marker in their environment.
    kill_marked_processes(f"SYNTH2_TEST_RAY_HEAD={marker}")


def test_ray_job_submit_runs_the_pipeline(tiny_world, tmp_path, ray_head):
    address, env = ray_head
    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    r = _submit([RAY, "job", "submit", "--address", address, "--working-dir", ".", "--",
                 sys.executable, "pipeline/run.py", "--spec", str(spec_file)], env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "succeeded" in (r.stdout + r.stderr).lower()
    m = Manifest.load(tmp_path / "job")
    assert m.complete and m.samples > 0
    assert all(sha256_file(tmp_path / "job" / s.name) == s.sha256 for s in m.shards)
    assert json.loads((tmp_path / "job" / "progress.json").read_text())["status"] == "SUCCEEDED"


def test_submit_without_the_token_is_refused(ray_head, tmp_path):
    address, env = ray_head
    bare = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    bare["HOME"] = str(tmp_path)  # no ~/.ray/auth_token either
    r = subprocess.run([RAY, "job", "list", "--address", address], env=bare, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0
    assert "token" in (r.stdout + r.stderr).lower()
