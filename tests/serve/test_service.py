"""The service as users run it: a real `synth2 serve` process over HTTP on loopback."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from contracts.shards import Manifest, iter_samples, sha256_file
from tests.conftest import kill_marked_processes
from tests.serve.conftest import Service, job_body, wait_for


def marked(job_id: str) -> list[int]:
    """Processes that belong to a job the service started (its worker and its Ray)."""
    needle = f"SYNTH2_SERVE_JOB={job_id}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in (proc / "environ").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def wait_progress(c, job_id: str, stage: str, done: int = 1, timeout: float = 300) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["progress"].get(stage, {}).get("done", 0) >= done or job["status"] not in ("PENDING", "RUNNING"):
            return job
        time.sleep(0.2)
    raise TimeoutError(job)


def test_the_demo_job_over_http(service, tiny_world, tmp_path):
    """Submit the demo job (on the tiny world), poll it to SUCCEEDED, pull its shards and read them."""
    from serve.client import Synth2Client

    world, _ = tiny_world
    service.env_extra["SYNTH2_JOB_EXECUTOR"] = "ray"  # the default deployment: each job starts its own local Ray
    service.start()
    c = service.client()
    r = c.post("/v1/jobs", json=job_body(world))
    assert r.status_code == 202, r.text
    job = wait_for(c, r.json()["id"], ("SUCCEEDED", "FAILED", "STOPPED"))
    log = c.get(f"/v1/jobs/{job['id']}/logs").text
    assert job["status"] == "SUCCEEDED", log
    assert "Started a local Ray instance" in log or "ray" in log.lower(), log[-2000:]
    manifest = c.get(f"/v1/jobs/{job['id']}/manifest").json()
    client = Synth2Client(service.url, service.env["SYNTH2_API_KEY"])
    client.pull(job["id"], tmp_path / "pulled")
    pulled = Manifest.load(tmp_path / "pulled")
    assert pulled.samples == manifest["samples"] == job["counts"]["samples"] > 0
    for s in pulled.shards:
        assert sha256_file(tmp_path / "pulled" / s.name) == s.sha256
    samples = list(iter_samples(tmp_path / "pulled"))
    assert len(samples) == pulled.samples
    assert all(s["txt"] and s["emb.npy"] is not None for s in samples)
    assert not list((tmp_path / "pulled").glob("*.part"))


def test_restart_reattaches_to_a_running_job(service, tiny_world):
    """SIGKILL the service mid-job; the job goes on, and the restarted service follows it to the end."""
    world, _ = tiny_world
    service.start()
    c = service.client()
    jid = c.post("/v1/jobs", json=job_body(world)).json()["id"]
    wait_progress(c, jid, "caption")
    service.kill()
    assert marked(jid), "the job died with the service"
    service.start()
    c = service.client()
    job = c.get(f"/v1/jobs/{jid}").json()
    assert job["status"] in ("RUNNING", "SUCCEEDED")
    if job["status"] == "RUNNING":
        assert job["message"] == "re-attached after a service restart"
    job = wait_for(c, jid, ("SUCCEEDED", "FAILED", "STOPPED"))
    assert job["status"] == "SUCCEEDED" and job["attempts"] == 1


@pytest.mark.parametrize("requeue", [False, True], ids=["mark-failed", "requeue"])
def test_restart_after_the_job_died_too(service, tiny_world, requeue):
    """Service and job both killed: the job is FAILED with the reason, or (SYNTH2_RESUBMIT_ORPHANS) requeued and
    resumed from its last finished shard."""
    world, _ = tiny_world
    service.env_extra["SYNTH2_RESUBMIT_ORPHANS"] = "1" if requeue else "0"
    service.start()
    c = service.client()
    body = job_body(world)
    jid = c.post("/v1/jobs", json=body).json()["id"]
    job = wait_progress(c, jid, "caption")  # mid-way: Ray is up and the first captions are in
    assert job["status"] == "RUNNING"
    service.kill()
    kill_marked_processes(f"SYNTH2_SERVE_JOB={jid}")
    before = Manifest.load(_output_dir(service, jid))
    service.start()
    c = service.client()
    job = c.get(f"/v1/jobs/{jid}").json()
    if not requeue:
        assert job["status"] == "FAILED"
        assert "service restarted" in job["error"] and "resubmit the same spec" in job["error"]
        # Resubmitting the same spec resumes: the shards finished before stay as they were.
        jid = c.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(c, jid, ("SUCCEEDED", "FAILED", "STOPPED"))
    assert job["status"] == "SUCCEEDED", c.get(f"/v1/jobs/{jid}/logs").text
    if requeue:
        assert job["attempts"] == 2
    after = Manifest.load(_output_dir(service, jid))
    assert after.complete and after.samples == job["counts"]["samples"]
    if before is not None:  # shards finished before the crash are kept as they were
        assert [(s.name, s.sha256) for s in after.shards[:len(before.shards)]] == [
            (s.name, s.sha256) for s in before.shards]


def test_cancel_stops_the_job_and_resubmitting_resumes(service, tiny_world):
    world, _ = tiny_world
    service.start()
    c = service.client()
    body = job_body(world)
    jid = c.post("/v1/jobs", json=body).json()["id"]
    wait_progress(c, jid, "caption")
    r = c.post(f"/v1/jobs/{jid}/cancel")
    assert r.status_code == 202
    job = wait_for(c, jid, ("STOPPED", "SUCCEEDED", "FAILED"), timeout=120)
    assert job["status"] in ("STOPPED", "SUCCEEDED")  # it may have finished before the signal landed
    deadline = time.time() + 30
    while marked(jid) and time.time() < deadline:
        time.sleep(0.2)
    assert not marked(jid), "processes of the cancelled job are left"
    before = Manifest.load(_output_dir(service, jid)) or Manifest(name="t")
    for s in before.shards:  # every shard in the manifest is whole
        assert sha256_file(Path(_output_dir(service, jid)) / s.name) == s.sha256
    jid2 = c.post("/v1/jobs", json=body).json()["id"]
    job = wait_for(c, jid2, ("SUCCEEDED", "FAILED", "STOPPED"))
    assert job["status"] == "SUCCEEDED"
    after = Manifest.load(_output_dir(service, jid2))
    assert [s.sha256 for s in after.shards[:len(before.shards)]] == [s.sha256 for s in before.shards]


def _output_dir(service: Service, job_id: str) -> str:
    from serve.store import JobStore

    s = JobStore(f"sqlite:///{service.data_dir / 'synth2.db'}")
    try:
        return s.get(job_id)["output_dir"]
    finally:
        s.close()


def test_wrong_and_missing_keys_over_http(service):
    import httpx

    service.start()
    assert httpx.get(f"{service.url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{service.url}/v1/jobs").status_code == 401
    r = httpx.get(f"{service.url}/v1/jobs", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and json.loads(r.text) == {"detail": "invalid API key"}
    r = httpx.post(f"{service.url}/v1/jobs", headers={"Authorization": f"Bearer {service.env['SYNTH2_API_KEY']}"},
                   content=b"x" * (2 << 20))
    assert r.status_code == 413
    assert os.path.exists(service.data_dir / "synth2.db")


def test_jobs_go_to_a_ray_cluster_when_ray_address_is_set(service, tiny_world, ray_head, tmp_path):
    """With RAY_ADDRESS, the service submits through Ray's JobSubmissionClient (token auth on)."""
    import sys

    address, env = ray_head
    world, _ = tiny_world
    service.env_extra.update({"RAY_ADDRESS": address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": env["RAY_AUTH_TOKEN"],
                              "SYNTH2_RAY_PYTHON": sys.executable})
    service.start()
    c = service.client()
    r = c.post("/v1/jobs", json=job_body(world))
    assert r.status_code == 202 and r.json()["runner"] == "ray"
    job = wait_for(c, r.json()["id"], ("SUCCEEDED", "FAILED", "STOPPED"))
    assert job["status"] == "SUCCEEDED", c.get(f"/v1/jobs/{job['id']}/logs").text[-3000:]
    assert job["counts"]["samples"] > 0
    assert "samples" in c.get(f"/v1/jobs/{job['id']}/logs").text  # logs come from the Ray job
    m = Manifest.load(_output_dir(service, job["id"]))
    assert m.complete and m.samples == job["counts"]["samples"]
