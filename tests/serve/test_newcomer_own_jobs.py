"""Issue #17 point 4: the service's own `vlm` consumer reads a job of the same service named by its URL
(the run's process holds no API key: the URL becomes the job's output directory)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def api(tmp_path, tiny_world):
    from serve.app import create_app
    from serve.settings import Settings

    s = Settings(data_dir=tmp_path / "svc", api_keys="k1,k2", max_running=0, poll_seconds=0.1,
                 model_roots=[str(tiny_world[0])], data_roots=[str(tiny_world[0]), str(tmp_path / "svc" / "jobs")],
                 private_jobs=True)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


def test_vlm_run_reads_a_job_of_this_service_by_url(api, tiny_world, tmp_path):
    from pipeline.spec import spec_hash
    from tests.conftest import world_spec

    world, _ = tiny_world
    h1, h2 = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}
    spec = world_spec(world, "unused")
    r = api.post("/v1/jobs", headers=h1, json=spec.model_dump(mode="json"))
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    out_dir = str(tmp_path / "svc" / "jobs" / f"{spec.name}-{spec_hash(spec)[:16]}")  # where the service puts it
    url = f"{api.base_url}/v1/jobs/{job_id}"
    params = {"data": [f"{url}@0.3", f"{world / 'data' / 'train'}@0.7"], "decoder": str(world / "lm"), "steps": 1}
    r = api.post("/v1/consumers/vlm/runs", headers=h1, json=params)
    assert r.status_code == 202, r.text
    run = api.get(f"/v1/consumers/vlm/runs/{r.json()['id']}", headers=h1).json()
    assert run["params"]["data"] == [f"{out_dir}@0.3", f"{world / 'data' / 'train'}@0.7"]
    # another key may not see that (private) job: its URL stays a URL, which this deployment does not allow
    r = api.post("/v1/consumers/vlm/runs", headers=h2, json=params | {"steps": 2})
    assert r.status_code == 422 and any(url in d for d in r.json()["detail"]), r.text
