"""The job store on SQLite always, and on PostgreSQL when SYNTH2_TEST_DATABASE_URL is set (.ci/run sets it)."""

from __future__ import annotations

import os
import threading

import pytest
from fastapi.testclient import TestClient

from serve.store import Base, JobStore

PG = os.environ.get("SYNTH2_TEST_DATABASE_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG, reason="SYNTH2_TEST_DATABASE_URL is not set (.ci/run starts a PostgreSQL and sets it)"))]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else PG
    s = JobStore(url)
    if request.param == "postgresql":  # a clean table for each test
        Base.metadata.drop_all(s.engine)
        Base.metadata.create_all(s.engine)
    yield s
    s.close()


def make(store, name="j", key="k1", h="h" * 64):
    return store.create(name=name, key_id=key, spec={"name": name, "n": [1, 2]}, spec_hash=h, output_dir="/out",
                        runner="local")


def test_create_get_list(store):
    a, b = make(store, "a"), make(store, "b", key="k2", h="x" * 64)
    assert store.get(a["id"])["spec"] == {"name": "a", "n": [1, 2]}
    assert store.get("missing") is None
    assert [j["name"] for j in store.list()] == ["b", "a"]  # newest first
    assert [j["name"] for j in store.list(oldest_first=True)] == ["a", "b"]  # the queue's order
    assert [j["name"] for j in store.list(key_id="k2")] == ["b"]
    assert store.count(statuses=("PENDING",)) == 2 and store.count(statuses=("PENDING",), key_id="k1") == 1
    assert store.active_with_hash("h" * 64)["id"] == a["id"]
    assert b["seq"] > a["seq"]
    assert store.ping()


def test_transitions_are_compare_and_set(store):
    j = make(store)
    assert store.transition(j["id"], "PENDING", status="RUNNING", handle="123:4.5")
    assert not store.transition(j["id"], "PENDING", status="STOPPED")  # no longer PENDING
    assert store.get(j["id"])["status"] == "RUNNING"
    assert store.transition(j["id"], ("PENDING", "RUNNING"), status="FAILED", error="boom")
    row = store.get(j["id"])
    assert row["status"] == "FAILED" and row["error"] == "boom" and row["finished_at"] is not None
    assert store.active_with_hash(j["spec_hash"]) is None


def test_one_winner_when_many_race_for_a_job(store):
    j = make(store)
    wins = []

    def take():
        wins.append(store.transition(j["id"], "PENDING", status="RUNNING"))

    threads = [threading.Thread(target=take) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(wins) == 1


def test_state_survives_reopening(store, tmp_path):
    j = make(store)
    store.transition(j["id"], "PENDING", status="RUNNING")
    again = JobStore(store.engine.url.render_as_string(hide_password=False))
    assert again.get(j["id"])["status"] == "RUNNING"
    again.close()


@pytest.mark.skipif(not PG, reason="SYNTH2_TEST_DATABASE_URL is not set")
def test_the_service_on_postgresql(tmp_path, tiny_world):
    """Submit, list, queue and cancel through the API with the store on PostgreSQL."""
    from serve.app import create_app
    from serve.settings import Settings
    from tests.serve.conftest import KEY, job_body

    s = JobStore(PG)
    Base.metadata.drop_all(s.engine)
    s.close()
    world, _ = tiny_world
    h = {"Authorization": f"Bearer {KEY}"}
    settings = Settings(data_dir=tmp_path, database_url=PG, api_keys=KEY, max_running=1, model_roots=[str(world)])
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").json()["database"] == "ok"
        posted = [c.post("/v1/jobs", headers=h, json=job_body(world, **{"captions.sampling.seed": k})) for k in (1, 2)]
        assert all(r.status_code == 202 for r in posted), [r.text for r in posted]
        ids = [r.json()["id"] for r in posted]
        jobs = c.get("/v1/jobs", headers=h).json()["jobs"]
        assert [j["id"] for j in jobs] == ids[::-1]
        for i in ids[::-1]:
            assert c.post(f"/v1/jobs/{i}/cancel", headers=h).status_code == 202
        import time

        deadline = time.time() + 120
        while time.time() < deadline and {c.get(f"/v1/jobs/{i}", headers=h).json()["status"] for i in ids} - {
                "STOPPED", "SUCCEEDED"}:
            time.sleep(0.2)
        assert {c.get(f"/v1/jobs/{i}", headers=h).json()["status"] for i in ids} <= {"STOPPED", "SUCCEEDED"}
