"""Every route and every error of the service, in process (`TestClient`), with real jobs on a tiny world."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import yaml
from fastapi.testclient import TestClient

from serve.app import create_app
from serve.settings import Settings, hash_key
from tests.serve.conftest import KEY, OTHER_KEY, job_body

H = {"Authorization": f"Bearer {KEY}"}
H2 = {"Authorization": f"Bearer {OTHER_KEY}"}


def wait(c: TestClient, job_id: str, statuses: tuple[str, ...], timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/v1/jobs/{job_id}", headers=H).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


@pytest.fixture(scope="module")
def api(tmp_path_factory, tiny_world):
    d = tmp_path_factory.mktemp("svc")
    # The second key is given as a digest: the service never needs the plain key.
    s = Settings(data_dir=d, api_keys=f"{KEY},sha256:{hash_key(OTHER_KEY)}", max_running=1, max_jobs_per_key=3,
                 poll_seconds=0.1, stop_grace_seconds=10, model_roots=[str(tiny_world[0])], job_executor="inline")
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def done(api, tiny_world):
    """One finished job."""
    world, _ = tiny_world
    r = api.post("/v1/jobs", headers=H, json=job_body(world))
    assert r.status_code == 202, r.text
    job = wait(api, r.json()["id"], ("SUCCEEDED", "FAILED"))
    assert job["status"] == "SUCCEEDED", api.get(f"/v1/jobs/{job['id']}/logs", headers=H).text
    return job


def test_healthz_and_docs_need_no_key(api):
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/docs").status_code == 200
    schema = api.get("/openapi.json").json()
    assert "/v1/jobs/{job_id}/shards/{name}" in schema["paths"]
    assert "bearer" in json.dumps(schema["components"]["securitySchemes"]).lower()


ROUTES = [("get", "/v1/jobs"), ("post", "/v1/jobs"), ("get", "/v1/jobs/x"), ("post", "/v1/jobs/x/cancel"),
          ("get", "/v1/jobs/x/logs"), ("get", "/v1/jobs/x/manifest"), ("get", "/v1/jobs/x/shards/a.tar"),
          ("get", "/v1/jobs/x/report")]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {KEY}"},
                                     {"Authorization": KEY}], ids=["missing", "wrong", "basic", "no-scheme"])
def test_every_route_needs_a_valid_key(api, method, path, headers):
    r = getattr(api, method)(path, headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert set(r.json()) == {"detail"}


def test_no_keys_configured_refuses_to_start(tmp_path):
    with pytest.raises(RuntimeError, match="SYNTH2_API_KEYS"):
        create_app(Settings(data_dir=tmp_path, api_keys=""))
    with pytest.raises(ValueError, match="64 hex"):
        create_app(Settings(data_dir=tmp_path, api_keys="sha256:abc"))


def test_oversized_bodies_get_413(api):
    big = b"{" + b" " * (1 << 20) + b"}"
    r = api.post("/v1/jobs", headers=H, content=big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the body is counted as it streams in
        for _ in range(80):
            yield b" " * (16 << 10)

    r = api.post("/v1/jobs", headers=H | {"content-type": "application/json"}, content=chunks())
    assert r.status_code == 413


def test_invalid_specs_get_422_naming_the_field(api, tiny_world):
    world, _ = tiny_world
    body = job_body(world)
    body["output"]["shard_size"] = 0
    body["synthesis"]["steps"] = 100000
    r = api.post("/v1/jobs", headers=H, json=body)
    assert r.status_code == 422
    detail = "\n".join(r.json()["detail"])
    assert "output.shard_size" in detail and "(got 0)" in detail and "synthesis.steps" in detail
    body = job_body(world) | {"surprise": 1}
    assert "surprise" in "\n".join(api.post("/v1/jobs", headers=H, json=body).json()["detail"])
    r = api.post("/v1/jobs", headers=H, content=b"{not json")
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"][0]
    r = api.post("/v1/jobs", headers=H | {"content-type": "application/yaml"}, content=b"version: [1\n")
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"][0]
    r = api.post("/v1/jobs", headers=H, json=[1, 2])
    assert r.status_code == 422 and "mapping" in r.json()["detail"][0]
    r = api.get("/v1/jobs", headers=H, params={"status": "DONE"})
    assert r.status_code == 422 and "status" in r.json()["detail"][0]
    r = api.get("/v1/jobs", headers=H, params={"limit": 0})
    assert r.status_code == 422 and "limit" in r.json()["detail"][0]


def test_unknown_jobs_are_404(api):
    for path in ["/v1/jobs/nope", "/v1/jobs/nope/logs", "/v1/jobs/nope/manifest", "/v1/jobs/nope/shards/t-000000.tar",
                 "/v1/jobs/nope/report"]:
        r = api.get(path, headers=H)
        assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert api.post("/v1/jobs/nope/cancel", headers=H).status_code == 404


def test_a_finished_job(api, done):
    jid = done["id"]
    job = api.get(f"/v1/jobs/{jid}", headers=H).json()
    assert list(job["progress"]) == ["caption", "score", "select", "synthesize", "shard"]
    assert all(s["status"] == "SUCCEEDED" for s in job["progress"].values())
    assert job["counts"]["samples"] == job["progress"]["shard"]["done"] > 0
    assert job["finished_at"] and job["elapsed_s"] > 0 and job["error"] is None
    assert any(j["id"] == jid for j in api.get("/v1/jobs", headers=H).json()["jobs"])
    assert any(j["id"] == jid for j in api.get("/v1/jobs", headers=H, params={"status": "SUCCEEDED"}).json()["jobs"])
    assert not api.get("/v1/jobs", headers=H2, params={"mine": True}).json()["jobs"]
    assert '"samples"' in api.get(f"/v1/jobs/{jid}/logs", headers=H).text
    assert len(api.get(f"/v1/jobs/{jid}/logs", headers=H, params={"tail": 3}).text.splitlines()) == 3
    r = api.post(f"/v1/jobs/{jid}/cancel", headers=H)
    assert r.status_code == 409 and "SUCCEEDED" in r.json()["detail"]
    r = api.get(f"/v1/jobs/{jid}/report", headers=H)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html") and 'id="plot-concepts"' in r.text
    r = api.get(f"/v1/jobs/{jid}/report", headers=H, params={"format": "json"})
    assert r.json()["metrics"]["selected"]["n"] == job["counts"]["samples"]
    assert job["counts"]["metrics"]["selected"]["vendi"] >= 1
    assert api.get(f"/v1/jobs/{jid}/report", headers=H, params={"format": "pdf"}).status_code == 422


def test_shard_downloads_with_ranges_and_etags(api, done):
    jid = done["id"]
    m = api.get(f"/v1/jobs/{jid}/manifest", headers=H).json()
    assert m["complete"] and m["shards"]
    s = m["shards"][0]
    url = f"/v1/jobs/{jid}/shards/{s['name']}"
    r = api.get(url, headers=H)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == s["sha256"]
    assert r.headers["etag"] == f'"{s["sha256"]}"' and r.headers["accept-ranges"] == "bytes"
    assert len(r.content) == s["bytes"]
    full = r.content
    r = api.get(url, headers=H | {"range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == full[100:200]
    assert r.headers["content-range"] == f"bytes 100-199/{s['bytes']}"
    r = api.get(url, headers=H | {"range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == full[1000:]
    r = api.get(url, headers=H | {"range": "bytes=1000-", "if-range": f'"{s["sha256"]}"'})
    assert r.status_code == 206 and r.content == full[1000:]
    r = api.get(url, headers=H | {"range": "bytes=1000-", "if-range": '"stale"'})
    assert r.status_code == 200 and r.content == full  # the file changed: start over
    r = api.get(url, headers=H | {"range": f"bytes={s['bytes'] + 10}-"})
    assert r.status_code == 416
    r = api.get(url, headers=H | {"if-none-match": f'"{s["sha256"]}"'})
    assert r.status_code == 304 and not r.content


@pytest.mark.parametrize("name", ["job.json", "manifest.json", "stats.json", "..%2Fjob.json", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                  "t-000000.tar%00", "t-999999.tar", "stages%2Fselection.npz"])
def test_only_manifest_names_are_served(api, done, name):
    r = api.get(f"/v1/jobs/{done['id']}/shards/{name}", headers=H)
    assert r.status_code == 404
    assert "root:" not in r.text


def test_a_symlink_in_place_of_a_shard_is_refused(api, done, tmp_path):
    m = api.get(f"/v1/jobs/{done['id']}/manifest", headers=H).json()
    name = m["shards"][-1]["name"]
    path = os.path.join(done_output(api, done), name)
    os.rename(path, tmp_path / "saved.tar")
    try:
        os.symlink("/etc/passwd", path)
        r = api.get(f"/v1/jobs/{done['id']}/shards/{name}", headers=H)
        assert r.status_code == 404 and "root:" not in r.text
    finally:
        os.unlink(path)
        os.rename(tmp_path / "saved.tar", path)


def done_output(api, job) -> str:
    return api.app.state.store.get(job["id"])["output_dir"]


def test_queue_order_limits_cancel_and_duplicates(api, done, tiny_world):
    world, _ = tiny_world
    # the first job is large, so that it is still running when it is cancelled, however fast the machine
    bodies = [job_body(world, **{"captions.sampling.seed": k, "captions.per_concept": 3000 if k == 11 else 6})
              for k in (11, 12, 13)]
    ids = []
    for b in bodies:
        r = api.post("/v1/jobs", headers=H, json=b)
        assert r.status_code == 202, r.text
        assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
        ids.append(r.json()["id"])
    # The same spec while it is still active: follow that job instead.
    r = api.post("/v1/jobs", headers=H2, json=bodies[1])
    assert r.status_code == 409 and ids[1] in r.json()["detail"]
    # Per-key limit: three jobs pending or running already.
    r = api.post("/v1/jobs", headers=H | {"content-type": "application/yaml"},
                 content=yaml.safe_dump(job_body(world, **{"captions.sampling.seed": 14})))
    assert r.status_code == 429 and "SYNTH2_MAX_JOBS_PER_KEY" in r.json()["detail"]
    # At most one runs (max_running=1); the others wait in submission order.
    wait(api, ids[0], ("RUNNING",))
    statuses = [api.get(f"/v1/jobs/{i}", headers=H).json()["status"] for i in ids]
    assert statuses == ["RUNNING", "PENDING", "PENDING"]
    # Only the submitting key may cancel.
    assert api.post(f"/v1/jobs/{ids[1]}/cancel", headers=H2).status_code == 403
    r = api.post(f"/v1/jobs/{ids[1]}/cancel", headers=H)
    assert r.status_code == 202 and r.json()["status"] == "STOPPED"
    api.post(f"/v1/jobs/{ids[0]}/cancel", headers=H)
    stopped = wait(api, ids[0], ("STOPPED", "FAILED", "SUCCEEDED"))
    assert stopped["status"] == "STOPPED" and "resume" in stopped["message"]
    wait(api, ids[2], ("RUNNING", "SUCCEEDED"))  # the queue moved on
    api.post(f"/v1/jobs/{ids[2]}/cancel", headers=H)
    wait(api, ids[2], ("STOPPED", "SUCCEEDED"))
    # A YAML body is accepted too.
    r = api.post("/v1/jobs", headers=H2 | {"content-type": "application/yaml"}, content=yaml.safe_dump(bodies[1]))
    assert r.status_code == 202
    assert api.post(f"/v1/jobs/{r.json()['id']}/cancel", headers=H2).status_code == 202
    wait(api, r.json()["id"], ("STOPPED", "SUCCEEDED", "FAILED"))


def test_internal_errors_carry_no_traceback(tmp_path, monkeypatch):
    with TestClient(create_app(Settings(data_dir=tmp_path, api_keys=KEY)), raise_server_exceptions=False) as c:
        def boom(*a, **k):
            raise RuntimeError("secret internals /etc/shadow")

        monkeypatch.setattr(c.app.state.store, "get", boom)
        r = c.get("/v1/jobs/x", headers=H)
        assert r.status_code == 500
        assert "reference" in r.json()["detail"] and "Traceback" not in r.text and "shadow" not in r.text


def test_output_dir_may_be_left_out_and_is_chosen_by_the_service(api, done, tiny_world):
    """The service owns where outputs go: a spec without output.dir is accepted, and one with it
    lands in the same place (named by the spec hash), so resubmitting resumes."""
    world, _ = tiny_world
    body = job_body(world)
    del body["output"]["dir"]
    r = api.post("/v1/jobs", headers=H, json=body)
    assert r.status_code == 202, r.text
    job = wait(api, r.json()["id"], ("SUCCEEDED", "FAILED", "STOPPED"))
    assert job["status"] == "SUCCEEDED"
    assert api.app.state.store.get(job["id"])["output_dir"] == done_output(api, done)
    assert job["spec_hash"] == done["spec_hash"]


def test_a_job_whose_model_is_missing_fails_at_once_with_one_clean_line(api, tiny_world):
    world, _ = tiny_world
    r = api.post("/v1/jobs", headers=H, json=job_body(world, **{"captions.model": str(world / "no-such-lm"),
                                                               "captions.sampling.seed": 77}))
    assert r.status_code == 202, r.text
    job = wait(api, r.json()["id"], ("FAILED", "SUCCEEDED"))
    assert job["status"] == "FAILED"
    assert "captions.model" in job["error"] and "no-such-lm" in job["error"], job["error"]
    assert "\n" not in job["error"] and "\x1b" not in job["error"] and "Traceback" not in job["error"]
