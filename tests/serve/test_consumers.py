"""Consumer runs in the service (`/v1/consumers/{name}/runs`): the routes and their errors in process,
and one real over-squashing run on a tiny GPT-2 through a real `synth2 serve` process and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from pydantic import Field, create_model

from contracts import registry
from serve.app import create_app
from serve.settings import Settings
from tests.serve.conftest import KEY, OTHER_KEY, wait_for

H = {"Authorization": f"Bearer {KEY}"}
H2 = {"Authorization": f"Bearer {OTHER_KEY}"}
RUNS = "/v1/consumers/oversquash/runs"


class EchoParams(registry.ConsumerParams):
    words: int = Field(1, ge=1, le=10)


def _echo(params: EchoParams, out_dir: Path, progress) -> dict:
    (out_dir / "echo.json").write_text(json.dumps({"words": params.words}))
    return {"words": params.words}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    registry.register("echo_test", EchoParams, _echo, "A consumer registered by the tests.")
    s = Settings(data_dir=tmp_path_factory.mktemp("svc"), api_keys=f"{KEY},{OTHER_KEY}", poll_seconds=0.1)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        yield c
    registry._REGISTRY.pop("echo_test", None)


@pytest.fixture(scope="module")
def finished(api, tmp_path_factory):
    """A SUCCEEDED oversquash run put straight into the store (no process runs), with files, a link to a file
    outside its output directory, and a linked directory."""
    out = tmp_path_factory.mktemp("run-out")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("not yours")
    (out.parent / "consumer-secret.txt").write_text("not yours")  # what `..` would reach
    (out / "collapse.json").write_text('{"families": {}}')
    (out / "sub").mkdir()
    (out / "sub" / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    (out / "summary.json").write_text(json.dumps({"summary": {"headline": 1.5}, "seconds": 2.0,
                                                  "files": ["collapse.json", "sub/plot.png"]}))
    os.symlink(outside / "secret.txt", out / "link.json")
    os.symlink(outside, out / "ld")
    store = api.app.state.store
    spec = {"version": 1, "name": "oversquash", "kind": "consumer",
            "consumer": {"name": "oversquash", "params": {"model": "m"}}, "output": {"dir": str(out)}}
    job = store.create(name="oversquash", key_id="k", spec=spec, spec_hash="h" * 64, output_dir=str(out), runner="none")
    store.transition(job["id"], "PENDING", status="SUCCEEDED", started_at=1.0)
    other = store.create(name="gen", key_id="k", spec={"version": 1, "kind": "synthesize"}, spec_hash="g" * 64,
                         output_dir=str(out), runner="none")
    store.transition(other["id"], "PENDING", status="FAILED")
    echo = store.create(name="echo_test", key_id="k", spec={**spec, "consumer": {"name": "echo_test", "params": {}}},
                        spec_hash="e" * 64, output_dir=str(out), runner="none")
    store.transition(echo["id"], "PENDING", status="FAILED")
    return job["id"], other["id"], echo["id"]


ROUTES = [("get", "/v1/consumers"), ("get", "/v1/consumers/oversquash"), ("get", RUNS), ("post", RUNS),
          ("get", f"{RUNS}/x"), ("post", f"{RUNS}/x/cancel"), ("get", f"{RUNS}/x/logs"), ("get", f"{RUNS}/x/files"),
          ("get", f"{RUNS}/x/files/collapse.json"), ("get", "/v1/consumers/nope/runs")]


@pytest.mark.parametrize("method,path", ROUTES)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}], ids=["missing", "wrong"])
def test_every_consumer_route_needs_a_valid_key(api, method, path, headers):
    r = getattr(api, method)(path, headers=headers)
    assert r.status_code == 401
    assert set(r.json()) == {"detail"}


def test_consumers_are_listed_with_their_params_schema(api):
    rows = {c["name"]: c for c in api.get("/v1/consumers", headers=H).json()["consumers"]}
    assert {"oversquash", "echo_test"} <= set(rows)
    schema = rows["oversquash"]["params_schema"]
    assert schema["required"] == ["model"]
    assert schema["properties"]["points"]["minimum"] == 2 and schema["additionalProperties"] is False
    assert rows["oversquash"]["links"]["runs"] == RUNS
    assert api.get("/v1/consumers/oversquash", headers=H).json()["params_schema"] == schema
    assert "/v1/consumers/{name}/runs/{run_id}/files/{path}" in api.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("method,path", [("get", "/v1/consumers/nope"), ("get", "/v1/consumers/nope/runs"),
                                         ("post", "/v1/consumers/nope/runs"), ("get", "/v1/consumers/nope/runs/x"),
                                         ("get", "/v1/consumers/nope/runs/x/files/a.json")])
def test_unknown_consumer_is_404_naming_the_known_ones(api, method, path):
    r = getattr(api, method)(path, headers=H)
    assert r.status_code == 404
    assert "'nope'" in r.json()["detail"] and "oversquash" in r.json()["detail"]


@pytest.mark.parametrize("body,expected", [
    ({"model": "m", "points": 1}, ["consumer.params.points: Input should be greater than or equal to 2 (got 1)"]),
    ({"model": "m", "bogus": 3}, ["consumer.params.bogus: Extra inputs are not permitted (got 3)"]),
    ({"points": 8}, ["consumer.params.model: Field required"]),
    ({"model": "m", "dtypes": "bfloat16"}, ["consumer.params.dtypes: must include float32"]),
    ({"model": "m", "device": "tpu; rm -rf"}, ["consumer.params.device: String should match pattern"]),
    ({"version": 1, "name": "x", "consumer": {"name": "echo_test", "params": {}}}, ["consumer.name: must be 'oversquash'"]),
    ({"version": 1, "name": "x", "kind": "embed", "consumer": {"name": "oversquash"}}, ["kind: must be 'consumer'"]),
    ([1, 2], ["(body): the params of consumer 'oversquash' as an object"]),
])
def test_bad_params_are_422_naming_the_field(api, body, expected):
    r = api.post(RUNS, headers=H, json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    for e in expected:
        assert any(d.startswith(e) for d in detail), detail
    assert not [j for j in api.get(RUNS, headers=H).json()["runs"] if j["status"] in ("PENDING", "RUNNING")]  # none queued


def test_invalid_yaml_and_status_filter_are_422(api):
    r = api.post(RUNS, headers=H | {"content-type": "application/yaml"}, content=b"model: [unclosed")
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"][0]
    assert api.get(RUNS, headers=H, params={"status": "DONE"}).status_code == 422


def test_run_view_list_and_files(api, finished):
    run_id, other_id, echo_id = finished
    run = api.get(f"{RUNS}/{run_id}", headers=H).json()
    assert run["status"] == "SUCCEEDED" and run["consumer"] == "oversquash"
    assert run["summary"] == {"headline": 1.5} and run["params"] == {"model": "m"}
    assert run["files"]["sub/plot.png"] == f"{RUNS}/{run_id}/files/sub/plot.png"
    assert run["links"]["job"] == f"/v1/jobs/{run_id}"
    # each consumer lists its own runs only; a pipeline job is no run
    assert [r["id"] for r in api.get(RUNS, headers=H).json()["runs"]] == [run_id]
    assert [r["id"] for r in api.get("/v1/consumers/echo_test/runs", headers=H).json()["runs"]] == [echo_id]
    for rid in (other_id, echo_id, "nope"):
        assert api.get(f"{RUNS}/{rid}", headers=H).status_code == 404
    assert api.get(f"{RUNS}/{other_id}/files/collapse.json", headers=H).status_code == 404
    names = [f["name"] for f in api.get(f"{RUNS}/{run_id}/files", headers=H).json()["files"]]
    assert names == ["collapse.json", "sub/plot.png", "summary.json"]  # not the links
    r = api.get(f"{RUNS}/{run_id}/files/collapse.json", headers=H)
    assert r.status_code == 200 and r.json() == {"families": {}}
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["content-security-policy"] == "sandbox"
    r = api.get(run["files"]["sub/plot.png"], headers=H)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")
    assert api.post(f"{RUNS}/{run_id}/cancel", headers=H).status_code in (403, 409)


@pytest.mark.parametrize("path", ["..%2F" * 12 + "etc%2Fpasswd", "%2e%2e/consumer-secret.txt",
                                  "sub/..%2F..%2Fconsumer-secret.txt", "link.json", "ld/secret.txt", "%2Fetc%2Fpasswd",
                                  "sub", "missing.json",
                                  "sub//plot.png", "%2E%2Fcollapse.json", "sub/%2E%2E/collapse.json"])
def test_file_route_refuses_traversal_links_and_dirs(api, finished, path):
    r = api.get(f"{RUNS}/{finished[0]}/files/{path}", headers=H)
    assert r.status_code == 404, (path, r.status_code, r.content[:50])
    assert "not yours" not in r.text and "root:" not in r.text


def test_spec_kind_consumer_validates_and_normalizes_params(api):
    from pipeline.spec import SpecError, parse_spec, spec_hash

    base = {"version": 1, "name": "r", "kind": "consumer", "output": {"dir": "/unused"}}
    spec = parse_spec(base | {"consumer": {"name": "oversquash", "params": {"model": "m", "dtypes": "float32,float16"}}})
    assert spec.consumer.params["dtypes"] == ["float32", "float16"] and spec.consumer.params["points"] == 40  # defaults kept
    other = parse_spec(base | {"consumer": {"name": "oversquash", "params": {"model": "m", "dtypes": ["float32", "float16"],
                                                                              "points": 40}}})
    assert spec_hash(other) == spec_hash(spec)  # the same run, however it was written
    with pytest.raises(SpecError) as e:
        parse_spec(base | {"consumer": {"name": "nope"}})
    assert e.value.problems[0].startswith("consumer.name: no consumer 'nope'; registered: ")
    with pytest.raises(SpecError, match="needs section"):
        parse_spec(base)


def test_run_consumer_writes_summary_progress_and_refuses_another_runs_dir(api, tmp_path):
    out = tmp_path / "r"
    result = registry.run_consumer("echo_test", {"words": 3}, str(out), spec_hash="a" * 64)
    assert result["summary"] == {"words": 3} and result["files"] == ["echo.json"]
    assert json.loads((out / "summary.json").read_text()) == result
    progress = json.loads((out / "progress.json").read_text())
    assert progress["status"] == "SUCCEEDED" and progress["stages"]["echo_test"]["status"] == "SUCCEEDED"
    assert registry.run_consumer("echo_test", {"words": 3}, str(out), spec_hash="a" * 64)["summary"] == {"words": 3}
    with pytest.raises(registry.OutputConflict, match="another run"):
        registry.run_consumer("echo_test", {"words": 4}, str(out), spec_hash="b" * 64)
    with pytest.raises(ValueError, match="less than or equal to 10"):
        registry.run_consumer("echo_test", {"words": 11}, str(tmp_path / "s"))
    with pytest.raises(TypeError, match="reject unknown keys"):
        registry.register("loose", create_model("Loose", a=(int, 1)), _echo)


# ---------------------------------------------------------------- a real run over HTTP


def test_oversquash_run_over_http(service, tmp_path):
    """A tiny GPT-2 analysed by the oversquash consumer in a real `synth2 serve`: 202 + Location, a queued run
    cancelled, the CLI's status and fetch, collapse.json and PNGs."""
    from consumers.oversquash.tiny import build_tiny_gpt2
    from synth2.cli import main

    model = tmp_path / "gpt2"
    build_tiny_gpt2(model, n_layer=1, n_embd=16, n_head=2, n_positions=64, seed=0)
    params = {"model": str(model), "max_len": 16, "points": 4, "dtypes": ["float32", "bfloat16"], "families": ["ones"],
              "behaviour": False, "synthetic": False}
    service.env_extra["SYNTH2_LOCAL_THREADS"] = "1"
    service.start()
    c = service.client()
    r = c.post(RUNS, json=params)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert r.headers["location"] == f"{RUNS}/{run_id}"

    cli = CliRunner(env={"SYNTH2_URL": service.url, "SYNTH2_API_KEY": KEY})
    args = [f"--param={k}={v if isinstance(v, (str, int)) else json.dumps(v)}" for k, v in params.items() if k != "points"]
    res = cli.invoke(main, ["consumers", "run", "oversquash", *args, "-p", "points=5"])
    assert res.exit_code == 0, res.output
    queued = res.output.split()[0]
    assert service.client(OTHER_KEY).post(f"{RUNS}/{queued}/cancel").status_code == 403
    assert c.post(f"{RUNS}/{queued}/cancel").status_code == 202
    assert wait_for(c, queued, ("SUCCEEDED", "FAILED", "STOPPED"))["status"] == "STOPPED"

    job = wait_for(c, run_id, ("SUCCEEDED", "FAILED", "STOPPED"), timeout=240)
    assert job["status"] == "SUCCEEDED", c.get(f"{RUNS}/{run_id}/logs").text
    assert job["progress"]["oversquash"]["status"] == "SUCCEEDED"
    assert {r["id"] for r in c.get(RUNS).json()["runs"]} == {run_id, queued}
    assert "collapse curve ones" in c.get(f"{RUNS}/{run_id}/logs").text

    res = cli.invoke(main, ["consumers", "status", run_id, "--json"])
    assert res.exit_code == 0, res.output
    run = json.loads(res.output)
    assert run["status"] == "SUCCEEDED" and run["params"]["points"] == 4
    assert "collapse.json" in run["files"] and run["summary"]["max_len_used"] == 16
    assert run["summary"]["families"]["ones"]["absolute"]["f32_l2_first"] > 0

    res = cli.invoke(main, ["consumers", "fetch", run_id, "--to", str(tmp_path / "got")])
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "got" / "collapse.json").read_text())
    assert data["dtypes"] == ["float32", "bfloat16"] and list(data["families"]) == ["ones"]
    assert data["families"]["ones"]["plain"]["n"][-1] <= 16
    for png in ("collapse_curves.png", "collapse_layers.png", "sensitivity.png"):
        assert (tmp_path / "got" / png).read_bytes().startswith(b"\x89PNG")
    assert not list((tmp_path / "got").glob(".*.part"))
    with httpx.Client(base_url=service.url) as anon:
        assert anon.get(f"{RUNS}/{run_id}/files/collapse.json").status_code == 401
