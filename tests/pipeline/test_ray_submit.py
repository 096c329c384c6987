"""`ray start --head` on loopback, then `ray job submit --working-dir . -- python pipeline/run.py`."""

import json
import subprocess
import sys

import yaml

from contracts.shards import Manifest, sha256_file
from tests.conftest import RAY, ray_submit, world_spec


def test_ray_job_submit_runs_the_pipeline(tiny_world, tmp_path, ray_head):
    address, env = ray_head
    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    r = ray_submit([RAY, "job", "submit", "--address", address, "--working-dir", ".", "--",
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
