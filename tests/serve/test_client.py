"""serve/client.py and `synth2 jobs` / `synth2 pull`: against one real job on a real service, and
the download logic's corner cases against an in-process fake (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from contracts.shards import Manifest, iter_samples
from serve.client import ClientError, PullSummary, ServiceError, ShardError, Synth2Client
from synth2.cli import main
from synth2.cli_client import _format_job
from tests.serve.conftest import KEY, OTHER_KEY, Service, job_body, roots_for, wait_for

# ---------------------------------------------------------------- one real job for the module


@pytest.fixture(scope="module")
def svc(tmp_path_factory, tiny_world):
    """A service with one tiny job submitted (through the client); the job is not waited for here."""
    world, _ = tiny_world
    root = tmp_path_factory.mktemp("client-svc")
    s = Service(root / "data", roots=roots_for(tmp_path_factory))
    s.data_dir.mkdir()
    s.start()
    with Synth2Client(s.url, KEY) as c:
        job = c.submit(job_body(world))
    s.job_id = job["id"]
    s.world = world
    yield s
    with s.client() as c:  # nothing left running behind the service's back
        for j in c.get("/v1/jobs").json()["jobs"]:
            if j["status"] in ("PENDING", "RUNNING"):
                c.post(f"/v1/jobs/{j['id']}/cancel")
                wait_for(c, j["id"], ("SUCCEEDED", "FAILED", "STOPPED"), timeout=120)
    s.stop()


@pytest.fixture(scope="module")
def done(svc):
    """The module's job, SUCCEEDED, and its manifest."""
    with svc.client() as c:
        job = wait_for(c, svc.job_id, ("SUCCEEDED", "FAILED", "STOPPED"))
        assert job["status"] == "SUCCEEDED", c.get(f"/v1/jobs/{svc.job_id}/logs?tail=40").text
        manifest = c.get(f"/v1/jobs/{svc.job_id}/manifest").json()
    assert len(manifest["shards"]) >= 3
    return job, manifest


@pytest.fixture
def client(svc):
    with Synth2Client(svc.url, KEY) as c:
        yield c


def cli(svc, *args, key=KEY):
    return CliRunner().invoke(main, list(args), env={"SYNTH2_URL": svc.url, "SYNTH2_API_KEY": key})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_pulled(d: Path, manifest: dict) -> None:
    """Every shard under its final name has the manifest's sha256; no .part is left; readers work."""
    for s in manifest["shards"]:
        assert sha256(d / s["name"]) == s["sha256"], s["name"]
    assert not list(d.glob("*.part"))
    m = Manifest.load(d)
    assert m is not None and m.complete and m.samples == manifest["samples"]
    assert [s.name for s in m.shards] == [s["name"] for s in manifest["shards"]]
    samples = list(iter_samples(d))
    assert len(samples) == manifest["samples"]
    assert all(isinstance(x["txt"], str) and x["json"]["source"] == "synthetic" for x in samples)


# ---------------------------------------------------------------- while the job runs (these come first)


def test_submit_of_an_invalid_spec_names_the_field(svc, tmp_path):
    body = job_body(svc.world)
    body["output"]["shard_size"] = 0
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(body))
    r = cli(svc, "jobs", "submit", str(spec))
    assert r.exit_code == 1
    assert r.stderr.startswith("error: 422 from POST /v1/jobs: ") and "output.shard_size" in r.stderr
    assert "Traceback" not in r.output


def test_a_wrong_key_is_a_clear_401(svc):
    r = cli(svc, "jobs", "list", key="not-a-key")
    assert r.exit_code == 1
    assert r.stderr.strip() == "error: 401 from GET /v1/jobs: invalid API key (check SYNTH2_API_KEY or --key)"
    r = CliRunner().invoke(main, ["jobs", "--url", svc.url, "--key", "nope", "status", svc.job_id])
    assert r.exit_code == 1 and "401" in r.stderr and "invalid API key" in r.stderr


def test_no_key_names_the_variable(svc, monkeypatch):
    monkeypatch.delenv("SYNTH2_API_KEY", raising=False)
    with pytest.raises(ClientError, match="SYNTH2_API_KEY"):
        Synth2Client(svc.url)
    r = CliRunner().invoke(main, ["jobs", "--url", svc.url, "list"], env={"SYNTH2_API_KEY": None})
    assert r.exit_code == 1 and "SYNTH2_API_KEY" in r.stderr


def test_submit_a_yaml_file_and_cancel_it(svc, tmp_path):
    """A second spec waits behind the module's job (one runs at a time); cancelling it stops it."""
    spec = tmp_path / "second.yaml"
    spec.write_text(yaml.safe_dump(job_body(svc.world, **{"captions.sampling.seed": 7})))
    r = cli(svc, "jobs", "submit", str(spec))
    assert r.exit_code == 0, r.output
    m = re.fullmatch(r"([0-9a-f]{16}) (PENDING|RUNNING)\n", r.stdout)
    assert m, r.stdout
    other = m.group(1)

    r = cli(svc, "jobs", "cancel", other, key=OTHER_KEY)
    assert r.exit_code == 1 and r.stderr.startswith(f"error: 403 from POST /v1/jobs/{other}/cancel: only the API key")

    r = cli(svc, "jobs", "cancel", other)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{other} ")
    with svc.client() as c:
        assert wait_for(c, other, ("SUCCEEDED", "FAILED", "STOPPED"), timeout=120)["status"] == "STOPPED"
    r = cli(svc, "jobs", "cancel", other)
    assert r.exit_code == 1 and "409" in r.stderr and "already STOPPED" in r.stderr


# ---------------------------------------------------------------- the finished job


def test_wait_status_list_logs(svc, done, client):
    job, _ = done
    assert client.wait(svc.job_id, timeout=5, poll=0.1)["status"] == "SUCCEEDED"
    got = client.get(svc.job_id)
    assert got["counts"]["samples"] == done[1]["samples"] and got["spec"]["name"] == job["name"]

    r = cli(svc, "jobs", "status", svc.job_id)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"job {svc.job_id}  {job['name']}  SUCCEEDED\n")
    for stage in ("caption", "select", "synthesize", "shard"):
        assert re.search(rf"^    {stage} +SUCCEEDED +\d+/\d+", r.stdout, re.M), r.stdout
    assert f"output: {done[1]['samples']} samples in {len(done[1]['shards'])} shards" in r.stdout

    r = cli(svc, "jobs", "status", svc.job_id, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["id"] == svc.job_id

    r = cli(svc, "jobs", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "PROGRESS", "CREATED"]
    row = next(line for line in lines if line.startswith(svc.job_id))
    assert "SUCCEEDED" in row and f"{len(done[1]['shards'])} shards" in row
    assert [x["id"] for x in client.list(status="SUCCEEDED")] == [svc.job_id]

    r = cli(svc, "jobs", "list", "--status", "succeeded", "--mine")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2 and svc.job_id in r.stdout
    r = cli(svc, "jobs", "list", "--mine", key=OTHER_KEY)
    assert r.exit_code == 0 and r.stdout == "no jobs\n"

    full = client.logs(svc.job_id)
    r = cli(svc, "jobs", "logs", svc.job_id, "--tail", "3")
    assert r.exit_code == 0
    assert r.stdout.splitlines() == full.splitlines()[-3:] and len(r.stdout.splitlines()) == 3

    r = cli(svc, "jobs", "status", "0000000000000000")
    assert r.exit_code == 1 and r.stderr == "error: 404 from GET /v1/jobs/0000000000000000: no job '0000000000000000'\n"


def test_pull_verifies_every_shard_and_readers_work(svc, done, client, tmp_path):
    _, manifest = done
    seen = []
    s = client.pull(svc.job_id, tmp_path / "out", workers=3, progress=lambda *a: seen.append(a))
    n = len(manifest["shards"])
    assert (s.downloaded, s.resumed, s.redownloaded, s.skipped) == (n, 0, 0, 0)
    assert s.bytes == sum(x["bytes"] for x in manifest["shards"]) and s.complete and s.samples == manifest["samples"]
    assert sorted(name for name, _, _ in seen) == sorted(x["name"] for x in manifest["shards"])
    assert_pulled(tmp_path / "out", manifest)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text()) == manifest

    again = client.pull(svc.job_id, tmp_path / "out")
    assert (again.downloaded, again.resumed, again.skipped, again.bytes) == (0, 0, n, 0)
    assert_pulled(tmp_path / "out", manifest)


def test_a_truncated_part_resumes(svc, done, client, tmp_path):
    _, manifest = done
    d = tmp_path / "out"
    client.pull(svc.job_id, d)
    first, second = manifest["shards"][0], manifest["shards"][1]
    half = first["bytes"] // 2
    whole = (d / first["name"]).read_bytes()
    (d / first["name"]).unlink()
    (d / f"{first['name']}.part").write_bytes(whole[:half])
    # a .part that is already whole (the rename was all that was left) is finished without a request
    (d / second["name"]).rename(d / f"{second['name']}.part")

    s = client.pull(svc.job_id, d, workers=2)
    assert (s.resumed, s.downloaded, s.redownloaded, s.skipped) == (2, 0, 0, len(manifest["shards"]) - 2)
    assert s.bytes == first["bytes"] - half
    assert sha256(d / first["name"]) == first["sha256"]
    assert_pulled(d, manifest)


def test_a_corrupt_part_or_shard_is_fetched_again(svc, done, client, tmp_path):
    """A .part with the wrong bytes fails the sha256 check after the resume and is fetched again from
    zero; a damaged file under a shard's final name is replaced. Nothing wrong survives a pull."""
    _, manifest = done
    d = tmp_path / "out"
    client.pull(svc.job_id, d)
    a, b = manifest["shards"][0], manifest["shards"][2]
    bad = bytearray((d / a["name"]).read_bytes()[: a["bytes"] // 2])
    bad[100:110] = b"x" * 10
    (d / a["name"]).unlink()
    (d / f"{a['name']}.part").write_bytes(bytes(bad))
    damaged = bytearray((d / b["name"]).read_bytes())
    damaged[-1] ^= 0xFF
    (d / b["name"]).write_bytes(bytes(damaged))

    outcomes = {}
    s = client.pull(svc.job_id, d, progress=lambda name, outcome, n: outcomes.__setitem__(name, outcome))
    assert outcomes[a["name"]] == "redownloaded" and outcomes[b["name"]] == "downloaded"
    assert (s.redownloaded, s.downloaded, s.resumed) == (1, 1, 0)
    assert s.bytes == (a["bytes"] - len(bad)) + a["bytes"] + b["bytes"]
    assert_pulled(d, manifest)


def test_cli_pull(svc, done, tmp_path):
    _, manifest = done
    n = len(manifest["shards"])
    r = cli(svc, "pull", svc.job_id, "--to", str(tmp_path / "p"), "--workers", "2", "--wait", "--poll", "0.1")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"pulled {n} shards ({manifest['samples']} samples) of job {svc.job_id} into ")
    assert f"{n} downloaded" in r.stdout
    assert r.stderr.count(": downloaded (") == n
    assert_pulled(tmp_path / "p", manifest)
    r = cli(svc, "pull", svc.job_id, "--to", str(tmp_path / "p"), "-q")
    assert r.exit_code == 0 and f"{n} already there" in r.stdout and r.stderr == ""
    r = cli(svc, "pull", "0000000000000000", "--to", str(tmp_path / "q"))
    assert r.exit_code == 1 and r.stderr == "error: 404 from GET /v1/jobs/0000000000000000: no job '0000000000000000'\n"


# ---------------------------------------------------------------- the download logic, against a fake


class FakeShards:
    """GET manifest and shards the way serve/app.py answers them, with knobs to misbehave."""

    def __init__(self, shards: dict[str, bytes], complete: bool = True) -> None:
        self.shards, self.complete = shards, complete
        self.ignore_range = False  # answer 200 with the whole file to a range request
        self.corrupt: set[str] = set()  # send these with a byte flipped
        self.requests: list[tuple[str, str | None]] = []

    def manifest(self) -> dict:
        entries, first = [], 0
        for name, data in self.shards.items():
            entries.append({"name": name, "samples": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                            "first_index": first})
            first += 1
        return {"version": 1, "name": "t", "samples": first, "complete": self.complete, "spec_hash": "h", "spec": None,
                "shards": entries}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.headers.get("authorization") != "Bearer k":
            return httpx.Response(401, json={"detail": "invalid API key"})
        if path == "/v1/jobs/j/manifest":
            return httpx.Response(200, json=self.manifest())
        if path == "/v1/jobs/j":
            return httpx.Response(200, json={"id": "j", "status": "SUCCEEDED" if self.complete else "RUNNING"})
        m = re.fullmatch(r"/v1/jobs/j/shards/(.+)", path)
        if not m or m.group(1) not in self.shards:
            return httpx.Response(404, json={"detail": f"no such thing: {path}"})
        name = m.group(1)
        data = self.shards[name]
        if name in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 1])
        etag = f'"{hashlib.sha256(self.shards[name]).hexdigest()}"'
        rng = request.headers.get("range")
        self.requests.append((name, rng))
        if rng and not self.ignore_range and request.headers.get("if-range") in (None, etag):
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(data):
                return httpx.Response(416, text="Range Not Satisfiable", headers={"content-range": f"bytes */{len(data)}"})
            return httpx.Response(206, content=data[start:], headers={
                "etag": etag, "content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return httpx.Response(200, content=data, headers={"etag": etag})


def fake_tar(seed: int) -> bytes:
    """A real (tiny) shard, so the pulled directory can be read back."""
    import io
    import tarfile

    from contracts.shards import _add_sample, make_sample

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add_sample(tar, make_sample(f"k{seed:04d}", f"caption {seed}", None, {"source": "synthetic"}))
    return raw.getvalue()


@pytest.fixture
def fake():
    return FakeShards({f"t-{i:06d}.tar": fake_tar(i) for i in range(3)})


def fake_client(fake: FakeShards) -> Synth2Client:
    return Synth2Client("http://fake", "k", transport=httpx.MockTransport(fake))


def test_a_range_the_server_will_not_honour_restarts_the_file(fake, tmp_path):
    name, data = next(iter(fake.shards.items()))
    (tmp_path / f"{name}.part").write_bytes(data[:700])
    fake.ignore_range = True
    s = fake_client(fake).pull("j", tmp_path)
    assert (s.redownloaded, s.downloaded, s.resumed) == (1, 2, 0)
    assert (name, "bytes=700-") in fake.requests
    assert (tmp_path / name).read_bytes() == data
    assert [x["txt"] for x in iter_samples(tmp_path)] == ["caption 0", "caption 1", "caption 2"]


def test_a_resume_sends_range_and_if_range(fake, tmp_path):
    name, data = list(fake.shards.items())[1]
    (tmp_path / f"{name}.part").write_bytes(data[:1000])
    (tmp_path / "t-000002.tar.part").write_bytes(b"\0" * (len(fake.shards["t-000002.tar"]) + 5))  # too long: not a prefix
    s = fake_client(fake).pull("j", tmp_path, workers=1)
    assert (s.resumed, s.downloaded) == (1, 2) and s.bytes == 3 * len(data) - 1000
    assert (name, "bytes=1000-") in fake.requests and ("t-000002.tar", None) in fake.requests
    assert all((tmp_path / n).read_bytes() == d for n, d in fake.shards.items())


def test_bad_bytes_from_the_server_raise_naming_the_shard(fake, tmp_path):
    fake.corrupt = {"t-000001.tar"}
    with pytest.raises(ShardError, match=r"shard t-000001\.tar of job j: received 10240 bytes with sha256"):
        fake_client(fake).pull("j", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t-000000.tar", "t-000002.tar"]  # no .part, no manifest
    fake.corrupt = set()
    s = fake_client(fake).pull("j", tmp_path)
    assert (s.downloaded, s.skipped) == (1, 2) and Manifest.load(tmp_path).samples == 3


def test_a_job_still_running_pulls_what_is_finished(fake, tmp_path):
    fake.complete = False
    s = fake_client(fake).pull("j", tmp_path)
    assert isinstance(s, PullSummary) and not s.complete and s.shards == 3
    assert Manifest.load(tmp_path).complete is False


def test_cli_pull_of_a_running_job_says_so(fake, tmp_path, monkeypatch):
    import serve.client

    fake.complete = False
    real = httpx.Client
    monkeypatch.setattr(serve.client.httpx, "Client", lambda **kw: real(**kw | {"transport": httpx.MockTransport(fake)}))
    r = CliRunner().invoke(main, ["pull", "j", "--to", str(tmp_path), "--url", "http://fake", "--key", "k", "-q"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("pulled 3 shards (3 samples) of job j into ")
    assert r.stderr == ("job j is RUNNING: these are the shards it had finished so far "
                        "(pull again when it finishes for the rest)\n")


def test_a_manifest_naming_a_path_is_refused(fake, tmp_path):
    fake.shards["../evil.tar"] = b"x"
    with pytest.raises(ClientError, match="not a plain file name"):
        fake_client(fake).pull("j", tmp_path / "d")
    assert not (tmp_path / "evil.tar").exists() and not (tmp_path / "d").exists()


def test_service_errors_read_as_one_line():
    e = ServiceError(422, ["output.shard_size: Input should be greater than or equal to 1 (got 0)", "name: bad"],
                     "POST", "/v1/jobs")
    assert str(e) == ("422 from POST /v1/jobs: output.shard_size: Input should be greater than or equal to 1 (got 0); "
                      "name: bad")
    with pytest.raises(ServiceError) as info:
        Synth2Client("http://fake", "wrong", transport=httpx.MockTransport(FakeShards({}))).manifest("j")
    assert info.value.status == 401 and str(info.value).startswith("401 from GET /v1/jobs/j/manifest: invalid API key")


def test_status_shows_the_error_of_a_failed_job():
    job = {"id": "abc", "name": "demo", "status": "FAILED", "key_id": "k", "spec_hash": "0" * 64, "runner": "local",
           "attempts": 2, "created_at": "2026-01-01T00:00:00+00:00", "started_at": "2026-01-01T00:00:01+00:00",
           "finished_at": "2026-01-01T00:00:09+00:00", "elapsed_s": 8.0, "error": "ValueError: no such model",
           "message": None, "progress": {"caption": {"done": 3, "total": 12, "status": "FAILED", "rate_per_s": 1.5}}}
    text = _format_job(job)
    assert text.splitlines()[0] == "job abc  demo  FAILED"
    assert re.search(r"^    caption +FAILED +3/12 \(25%\), 1\.5/s$", text, re.M)
    assert text.splitlines()[-1] == "  error: ValueError: no such model"

