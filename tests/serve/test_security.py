"""Issue #14's attacks, each tried as a key holder would: over real HTTP against a real `synth2 serve` on
127.0.0.1 (one process for the module), with listeners on loopback that must receive no secret."""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from serve.runner import MARKER
from tests.serve.conftest import KEY, OTHER_KEY, Service, job_body, wait_for

SECRETS = {"CAPTION_KEY": "caption-secret-7f3a", "RAY_AUTH_TOKEN": "ray-token-never-leaves",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-never-leaves"}


class Listener:
    """An HTTP server on loopback that records every request (headers and body) and answers with `answer`."""

    def __init__(self, answer=(401, b"BODY-LEAK upstream internals /etc/shadow"), delay: float = 0.0) -> None:
        self.seen: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                n = int(self.headers.get("content-length") or 0)
                outer.seen.append({"path": self.path, "headers": dict(self.headers),
                                   "body": self.rfile.read(n).decode("utf-8", "replace")})
                time.sleep(outer.delay)
                status, body = outer.answer
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *a):
                pass

        self.answer, self.delay = answer, delay
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return json.dumps(self.seen)

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_world):
    world, _ = tiny_world
    root = tmp_path_factory.mktemp("security")
    allowed = root / "allowed"
    allowed.mkdir()
    private = root / "private"
    private.mkdir()
    with tarfile.open(private / "secret.tar", "w") as t:  # a private shard set the service can read
        data = b"private caption"
        info = tarfile.TarInfo("p-0.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    os.symlink(private / "secret.tar", allowed / "link.tar")  # a link inside an allowed root, pointing out
    listener, other = Listener(delay=1.5), Listener()
    svc = Service(root / "data", roots=f"{world},{allowed}")
    svc.data_dir.mkdir()
    svc.env_extra.update(SECRETS | {
        "DATABASE_URL": f"sqlite:///{svc.data_dir / 'synth2.db'}", "SYNTH2_CAPTION_HOSTS": f"127.0.0.1:{listener.port}",
        "SYNTH2_SECRET_NAMES": "CAPTION_KEY", "SYNTH2_MAX_REQUESTS_PER_JOB": "1000"})
    svc.start()
    yield {"svc": svc, "world": world, "private": private, "allowed": allowed, "listener": listener, "other": other}
    svc.stop()
    listener.close()
    other.close()


def _post(svc: Service, body, **kw) -> httpx.Response:
    with svc.client() as c:
        return c.post("/v1/jobs", json=body, **kw)


def _openai(world: Path, endpoint: str, key_env: str | None) -> dict:
    body = job_body(world)
    body["captions"].update(backend="openai", endpoint=endpoint, model="any", api_key_env=key_env, max_retries=0)
    return body


def _no_secret_in(text: str, svc: Service) -> None:
    for value in [KEY, OTHER_KEY, *SECRETS.values(), str(svc.data_dir / "synth2.db")]:
        if value != SECRETS["CAPTION_KEY"]:
            assert value not in text


# ---------------------------------------------------------------- 1. secrets


@pytest.mark.parametrize("name", ["SYNTH2_API_KEYS", "SYNTH2_API_KEY", "DATABASE_URL", "RAY_AUTH_TOKEN",
                                  "AWS_SECRET_ACCESS_KEY", "HOME"])
def test_a_spec_cannot_name_the_services_secrets(env, name):
    r = _post(env["svc"], _openai(env["world"], env["listener"].url + "/v1", name))
    assert r.status_code == 422
    (line,) = [p for p in r.json()["detail"] if p.startswith("captions.api_key_env")]
    assert "SYNTH2_SECRET_NAMES" in line and repr(name) in line
    assert not env["listener"].seen


def test_caption_endpoints_only_on_allowed_hosts(env):
    port = env["other"].port
    for endpoint in [env["other"].url + "/v1", f"http://localhost:{port}/v1", f"http://user:pw@127.0.0.1:{port}/v1"]:
        r = _post(env["svc"], _openai(env["world"], endpoint, None))
        assert r.status_code == 422
        assert any(p.startswith("captions.endpoint:") and "SYNTH2_CAPTION_HOSTS" in p for p in r.json()["detail"])
    assert not env["other"].seen


@pytest.mark.slow  # a real job (its own Ray) up to the caption stage: about 2 minutes on 2 busy cores
def test_the_one_allowed_secret_reaches_the_listener_and_nothing_else_does(env):
    """An allowed host and an allowed secret name: the listener gets that secret only; the job's process has a
    scrubbed environment; the upstream's error body never reaches the job's error (readable by every key)."""
    svc, listener = env["svc"], env["listener"]
    r = _post(svc, _openai(env["world"], listener.url + "/v1", "CAPTION_KEY"))
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    environ = None
    deadline = time.time() + 120
    while environ is None and time.time() < deadline:  # the job's worker, while the listener stalls its answer
        for p in psutil.process_iter():
            try:
                e = p.environ()
            except psutil.Error:
                continue
            if e.get(MARKER) == jid and "serve.worker" in " ".join(p.cmdline()):
                environ = e
        time.sleep(0.2)
    assert environ is not None
    assert environ["CAPTION_KEY"] == SECRETS["CAPTION_KEY"]
    for name in ("SYNTH2_API_KEYS", "SYNTH2_API_KEY", "DATABASE_URL", "RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY"):
        assert name not in environ
    with svc.client() as c:
        job = wait_for(c, jid, ("FAILED", "SUCCEEDED", "STOPPED"), timeout=240)
        assert job["status"] == "FAILED"
        assert f"127.0.0.1:{listener.port}" in job["error"] and "HTTP 401" in job["error"]
        assert "BODY-LEAK" not in json.dumps(job) and "shadow" not in c.get(f"/v1/jobs/{jid}/logs").text
    assert listener.seen and {s["headers"].get("Authorization") for s in listener.seen} == {
        f"Bearer {SECRETS['CAPTION_KEY']}"}
    _no_secret_in(listener.text(), svc)


def test_vlm_data_urls_never_get_the_services_key(monkeypatch):
    """vlm/data sends SYNTH2_API_KEY only to the origin SYNTH2_URL names, and not across a redirect."""
    from vlm.data import shard_urls

    evil = Listener(answer=(200, b'{"shards": []}'))
    redirector = Listener(answer=(302, b""))
    try:
        monkeypatch.setenv("SYNTH2_API_KEY", "the-users-key")
        monkeypatch.setenv("SYNTH2_URL", redirector.url)
        assert shard_urls(f"{evil.url}/v1/jobs/x") == []
        assert evil.seen and "Authorization" not in evil.seen[0]["headers"]
        with pytest.raises(OSError, match=r"127\.0\.0\.1 answered HTTP 302"):  # no Location: a failure, named
            shard_urls(f"{redirector.url}/v1/jobs/x")
        assert redirector.seen[0]["headers"]["Authorization"] == "Bearer the-users-key"  # its own service
    finally:
        evil.close()
        redirector.close()


# ---------------------------------------------------------------- 2-3. files and URLs


def _embed(shards: list[str], world: Path) -> dict:
    return {"version": 1, "name": "steal", "kind": "embed", "output": {"dir": "x"},
            "input": {"shards": shards, "encoder": {"name": f"local-dir:{world / 'clip'}"}}}


def test_a_private_tar_outside_the_roots_is_refused_and_never_downloadable(env):
    svc, private = env["svc"], env["private"]
    secret = str(private / "secret.tar")
    rel = os.path.relpath(secret, Path(__file__).resolve().parents[2])  # relative to the job's working directory
    for shards in ([secret], [f"file://{secret}"], [rel], [str(env["allowed"] / "link.tar")],
                   [str(env["allowed"] / "{link,x}.tar")], [f"{{{private},{env['allowed']}}}/secret.tar"],
                   ["pyproject.toml"], ["memory://bucket/x.tar"], [env["other"].url + "/x.tar"]):
        r = _post(svc, _embed(shards, env["world"]))
        assert r.status_code == 422, (shards, r.text)
        (line,) = r.json()["detail"]
        assert line.startswith("input.shards.0: ") and repr(shards[0]) in line
    with svc.client() as c:
        for job in c.get("/v1/jobs").json()["jobs"]:
            assert job["name"] != "steal"
            m = c.get(f"/v1/jobs/{job['id']}/manifest")
            assert m.status_code == 404 or "secret" not in m.text
    assert not env["other"].seen


@pytest.mark.parametrize("consumer,params,field", [
    ("vlm", {"data": ["{private}@0.5"], "decoder": "{world}/lm"}, "consumer.params.data.0"),
    ("vlm", {"data": ["{world}/data/train"], "decoder": "/usr/lib"}, "consumer.params.decoder"),
    ("vlm", {"data": ["{world}/data/train"], "decoder": "{world}/lm", "test": "{other}/v1/jobs/x"}, "consumer.params.test"),
    ("oversquash", {"model": "{private}"}, "consumer.params.model"),
    ("oversquash", {"model": "gpt2"}, "consumer.params.model"),  # a hub id: closed by default
    ("clrs", {"algorithm": "bfs", "data": "file://{private}"}, "consumer.params.data")])
def test_consumer_runs_read_only_inside_the_roots(env, consumer, params, field):
    fill = {"private": str(env["private"]), "world": str(env["world"]), "other": env["other"].url}
    params = json.loads(json.dumps(params).replace("{private}", fill["private"]).replace("{world}", fill["world"])
                        .replace("{other}", fill["other"]))
    with env["svc"].client() as c:
        r = c.post(f"/v1/consumers/{consumer}/runs", json=params)
    assert r.status_code == 422, r.text
    assert any(p.startswith(field + ": ") and "ROOTS" in p for p in r.json()["detail"]), r.json()


# ---------------------------------------------------------------- 4. parsing

BOMB = ("a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
        + "".join(f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n" for p, c in zip("abcdefgh", "bcdefghi")))


@pytest.mark.parametrize("body,ctype", [
    (BOMB.encode(), "application/yaml"),
    (b"x: &x [*x]\n", "application/yaml"),  # an alias of itself
    ((b"- item\n" * ((1 << 20) // 7))[: (1 << 20) - 64], "application/yaml"),  # a 1 MiB YAML list
    (b"[" * 100_000 + b"]" * 100_000, "application/json"),  # beyond Python's recursion limit
    (b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 300)), "application/yaml"),
], ids=["alias-bomb", "self-alias", "1MiB-yaml", "deep-json", "deep-yaml"])
def test_hostile_bodies_are_refused_fast_and_the_service_stays_responsive(env, body, ctype):
    svc = env["svc"]
    if body.startswith(b"a: &a"):
        assert len(body) < 600
    health: list[float] = []
    stop = threading.Event()

    def ping():
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            while not stop.is_set():
                t = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                health.append(time.perf_counter() - t)
                time.sleep(0.05)

    with ThreadPoolExecutor(1) as pool:
        pinger = pool.submit(ping)
        time.sleep(0.2)
        t0 = time.perf_counter()
        r = _post(svc, None, content=body, headers={"content-type": ctype})
        took = time.perf_counter() - t0
        time.sleep(0.2)
        stop.set()
        pinger.result()
    assert 400 <= r.status_code < 500 and r.status_code != 404, r.text
    assert took < 2.0, took
    assert health and max(health) < 1.0, health
    assert set(r.json()) == {"detail"} and len(r.text) < 2000
    log = (svc.data_dir.parent / f"service-{svc.port}.log").read_text()
    assert "Traceback" not in log


# ---------------------------------------------------------------- 5-6. size and types


def test_the_huge_spec_is_refused_at_submission(env):
    body = job_body(env["world"])
    body["concepts"]["items"] = [f"c{i}" for i in range(1000)]
    body["captions"]["per_concept"] = 1_000_000
    assert len(json.dumps(body)) < 20_000
    r = _post(env["svc"], body)
    assert r.status_code == 422
    assert any(p.startswith("captions.per_concept: ") and "SYNTH2_SPEC_MAX_REQUESTS" in p for p in r.json()["detail"])
    body["concepts"]["items"] = body["concepts"]["items"][:6]
    body["captions"]["per_concept"] = 1000  # within the spec's bound, over this service's (1000 requests)
    r = _post(env["svc"], body)
    assert r.status_code == 422
    (line,) = r.json()["detail"]
    assert line.startswith("captions.per_concept: ") and "SYNTH2_MAX_REQUESTS_PER_JOB" in line and "6000" in line


@pytest.mark.parametrize("value", [True, "20", 20.0])
def test_integers_are_strict(env, value):
    body = job_body(env["world"])
    body["captions"]["per_concept"] = value
    r = _post(env["svc"], body)
    assert r.status_code == 422
    assert r.json()["detail"][0].startswith("captions.per_concept: Input should be a valid integer")


# ---------------------------------------------------------------- 7-8. OpenAPI and the browser


def test_openapi_resolves_and_documents_every_status(env):
    with httpx.Client(base_url=env["svc"].url) as c:
        doc = c.get("/openapi.json").json()
    text = json.dumps(doc)
    refs = set(re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', text))
    assert refs and refs <= set(doc["components"]["schemas"])
    assert "#/$defs" not in text
    ops = {(m.upper(), p): op for p, item in doc["paths"].items() for m, op in item.items()}
    for (method, path), op in ops.items():
        if path.startswith("/v1"):
            assert "401" in op["responses"], (method, path)
            assert doc["components"]["schemas"]["Problem"] == _schema(doc, op["responses"]["401"])
    assert {"202", "409", "413", "422", "429"} <= set(ops["POST", "/v1/jobs"]["responses"])
    assert {"404", "403", "409"} <= set(ops["POST", "/v1/jobs/{job_id}/cancel"]["responses"])
    assert "JobView" in json.dumps(ops["GET", "/v1/jobs/{job_id}"]["responses"]["200"])


def _schema(doc: dict, response: dict) -> dict:
    ref = response["content"]["application/json"]["schema"]["$ref"]
    return doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]


def test_422_bodies_match_the_declared_schema_and_405_lists_every_method(env):
    with env["svc"].client() as c:
        r = c.get("/v1/jobs", params={"limit": "many"})
        assert r.status_code == 422 and isinstance(r.json()["detail"], list)
        assert all(isinstance(x, str) for x in r.json()["detail"])
        r = c.put("/v1/jobs")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, POST"
        r = c.delete("/v1/jobs/x")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_dashboard_and_docs_load_nothing_inline_or_from_elsewhere(env):
    with httpx.Client(base_url=env["svc"].url) as c:
        for page in ("/", "/docs"):
            r = c.get(page)
            csp = r.headers["content-security-policy"]
            assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
            assert r.headers["x-frame-options"] == "DENY"
            html = r.text
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page  # no inline script
            assert not re.search(r"<style|\son[a-z]+=|\sstyle=", html), page
            for src in re.findall(r'(?:src|href)="([^"]+)"', html):
                assert src.startswith("/") or src == "data:,", src  # nothing from another origin
                if src.startswith("/"):
                    assert c.get(src).status_code == 200, src
        assert "SwaggerUIBundle" in c.get("/static/swagger-ui/swagger-ui-bundle.js").text
        assert "frame-ancestors 'none'" in c.get("/healthz").headers["content-security-policy"]


def test_private_jobs_setting_hides_other_keys_jobs(tmp_path, tiny_world):
    """SYNTH2_PRIVATE_JOBS: a key sees only its own jobs (others' are 404, not listed)."""
    from fastapi.testclient import TestClient

    from serve.app import create_app
    from serve.settings import Settings

    world, _ = tiny_world
    s = Settings(data_dir=tmp_path, api_keys=f"{KEY},{OTHER_KEY}", private_jobs=True, max_running=0,
                 model_roots=[str(world)])
    with TestClient(create_app(s)) as c:
        mine = c.post("/v1/jobs", json=job_body(world), headers={"Authorization": f"Bearer {KEY}"})
        assert mine.status_code == 202, mine.text
        jid = mine.json()["id"]
        other = {"Authorization": f"Bearer {OTHER_KEY}"}
        assert c.get(f"/v1/jobs/{jid}", headers=other).status_code == 404
        assert c.get(f"/v1/jobs/{jid}/logs", headers=other).status_code == 404
        assert c.get("/v1/jobs", headers=other).json()["jobs"] == []
        assert [j["id"] for j in c.get("/v1/jobs", headers={"Authorization": f"Bearer {KEY}"}).json()["jobs"]] == [jid]
