"""Issue #17 point 3: model references checked before a job starts, paths relative to the spec file, one
error line from `synth2 run`, progress.json errors without colour codes, unfinished stages marked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _demo(**captions) -> dict:
    d = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    d["captions"].update(captions)
    return d


def _fake_models(root: Path) -> Path:
    """Folders shaped like the world's models (enough for the reference check; nothing loads them)."""
    (root / "lm").mkdir(parents=True)
    (root / "lm" / "config.json").write_text("{}")
    (root / "prior" / "prior").mkdir(parents=True)
    (root / "clip").mkdir()
    (root / "clip" / "open_clip_config.json").write_text("{}")
    return root


def _spec(d: dict, **over):
    from pipeline.spec import parse_spec

    for k, v in over.items():
        section, _, field = k.partition(".")
        d[section][field] = v
    return parse_spec(d)


def test_missing_paths_named_by_field(tmp_path, monkeypatch):
    from pipeline.model_refs import check_models

    monkeypatch.chdir(tmp_path)
    problems = check_models(_spec(_demo(model="/nonexistent/lm")))
    assert problems[0] == "captions.model: no such file or folder (got '/nonexistent/lm')"
    assert [p.split(":")[0] for p in problems] == ["captions.model", "synthesis.prior", "synthesis.encoder.name"]
    _fake_models(tmp_path / "world")
    assert check_models(_spec(_demo())) == []
    (tmp_path / "world" / "clip" / "open_clip_config.json").unlink()
    assert check_models(_spec(_demo())) == [
        "synthesis.encoder.name: the folder has no open_clip_config.json (not an open_clip model folder) "
        "(got 'local-dir:world/clip')"]


def test_hub_ids_and_pkg_refs(tmp_path, monkeypatch):
    import huggingface_hub.constants as c

    from pipeline.model_refs import check_models

    monkeypatch.chdir(tmp_path)
    _fake_models(tmp_path / "world")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (p,) = check_models(_spec(_demo(model="HuggingFaceTB/SmolLM2-135M")))
    assert p.startswith("captions.model: no such file or folder") and "hub cache while the hub is offline" in p
    (tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M" / "refs").mkdir(parents=True)
    (tmp_path / "hub" / "models--HuggingFaceTB--SmolLM2-135M" / "refs" / "main").write_text("abc123")
    assert check_models(_spec(_demo(model="HuggingFaceTB/SmolLM2-135M"))) == []
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    assert check_models(_spec(_demo(model="gpt2"))) == []  # a hub the job can reach decides for itself
    (p,) = check_models(_spec(_demo(model="pkg:no_such_package_xyz/model.gguf")))
    assert p.startswith("captions.model: 'pkg:no_such_package_xyz/model.gguf': no installed package")


def test_relative_paths_resolve_against_the_spec_file(tmp_path, monkeypatch):
    from pipeline.model_refs import check_models, resolve_relative
    from pipeline.spec import load_spec, spec_hash

    proj = tmp_path / "proj"
    _fake_models(proj / "models")
    d = _demo(model="models/lm")
    d["synthesis"].update(prior="models/prior", encoder={"name": "local-dir:models/clip"})
    (proj / "job.yaml").write_text(yaml.safe_dump(d))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = resolve_relative(load_spec(proj / "job.yaml"), proj)
    assert spec.captions.model == str(proj / "models" / "lm")
    assert spec.synthesis.encoder.name == f"local-dir:{proj / 'models' / 'clip'}"
    assert check_models(spec) == []
    monkeypatch.chdir(proj)  # from the spec's own directory nothing changes, nor does the hash
    same = resolve_relative(load_spec(proj / "job.yaml"), proj)
    assert same.captions.model == "models/lm" and spec_hash(same) == spec_hash(load_spec(proj / "job.yaml"))
    monkeypatch.chdir(tmp_path)  # from above it, the paths stay relative (the same hash on every checkout)
    assert resolve_relative(load_spec(proj / "job.yaml"), proj).captions.model == "proj/models/lm"


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "pipeline" / "run.py"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_validate_and_run_reject_a_missing_model_in_one_line(tmp_path):
    spec = tmp_path / "job.yaml"
    d = _demo(model="/nonexistent/lm")
    d["output"]["dir"] = str(tmp_path / "out")
    spec.write_text(yaml.safe_dump(d))
    r = subprocess.run([sys.executable, "-m", "synth2.cli", "spec", "validate", str(spec)], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and "  captions.model: no such file or folder (got '/nonexistent/lm')" in r.stderr
    r = _run("--spec", str(spec), cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines()[0] == "error: captions.model: no such file or folder (got '/nonexistent/lm')"
    assert "Traceback" not in r.stderr + r.stdout and not (tmp_path / "out").exists()  # nothing started


def test_error_line_unwraps_ray_and_strips_colour():
    from ray.exceptions import RayTaskError

    from pipeline.job import error_line

    cause = OSError("world/lm is not a local folder\nand is not a valid model identifier")
    e = RayTaskError("CaptionChunks.__call__", "\x1b[36mray::CaptionChunks()\x1b[39m (pid=1)\nTraceback (most "
                     "recent call last):\n  File \"x.py\", line 1\nOSError: world/lm ...", cause)
    assert error_line(e) == "OSError: world/lm is not a local folder and is not a valid model identifier"
    assert error_line(RuntimeError("\x1b[31mred\x1b[0m text")) == "RuntimeError: red text"


def test_failed_job_marks_every_unfinished_stage(tmp_path):
    from contracts.storage import Store
    from pipeline.job import Progress, record_end

    p = Progress(Store(tmp_path), "job")
    for stage in ("caption", "score", "select", "synthesize", "shard"):
        p.stages[stage] = {"done": 0, "total": None, "status": "PENDING", "started_at": None}
    p.update("caption", done=10, total=10, status="SUCCEEDED")
    p.update("score", done=4, total=10, status="RUNNING")
    record_end(p, RuntimeError("\x1b[31mboom\x1b[0m"))
    saved = json.loads((tmp_path / "progress.json").read_text())
    assert saved["status"] == "FAILED" and saved["error"] == "RuntimeError: boom"
    assert {k: v["status"] for k, v in saved["stages"].items()} == {
        "caption": "SUCCEEDED", "score": "FAILED", "select": "FAILED", "synthesize": "FAILED", "shard": "FAILED"}


@pytest.mark.slow  # loads torch and transformers in a subprocess (~20 s here)
def test_run_failure_after_start_is_one_line_and_recorded(tmp_path):
    """A model folder that passes the reference check but does not load: one `error:` line, no traceback;
    progress.json says FAILED for every stage, without colour codes."""
    models = _fake_models(tmp_path / "m")
    d = _demo(model=str(models / "lm"))
    d["synthesis"].update(prior=str(models / "prior"), encoder={"name": f"local-dir:{models / 'clip'}"})
    d["output"]["dir"] = str(tmp_path / "out")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(d))
    r = _run("--spec", str(tmp_path / "job.yaml"), "--local", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert progress["status"] == "FAILED" and "\x1b" not in progress["error"]
    assert errors[0] == f"error: {progress['error']}"
    assert set(progress["stages"]) == {"caption", "score", "select", "synthesize", "shard"}
    assert {v["status"] for v in progress["stages"].values()} == {"FAILED"}
    r = _run("--spec", str(tmp_path / "job.yaml"), "--local", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback (most recent call last)" in r.stderr


def test_error_line_of_an_actor_that_died_in_its_constructor():
    from ray.exceptions import ActorDiedError, RayTaskError

    from pipeline.job import error_line

    tb = ("\x1b[36mray::MapWorker(MapBatches(CaptionChunks)).__init__()\x1b[39m (pid=1, ip=127.0.0.1)\n"
          "  File \"/x/generators/pretrained.py\", line 96, in load_causal_lm\n    tok = f()\n          ^^^^\n"
          "ValueError: Couldn't instantiate the backend tokenizer from one of:\n(1) a file\n\n"
          "The above exception was the direct cause of the following exception:\n\n"
          "\x1b[36mray::MapWorker(MapBatches(CaptionChunks)).__init__()\x1b[39m (pid=1, ip=127.0.0.1)\n"
          "generators.captioners.CaptionBackendError: cannot load caption model '/m/lm': Couldn't instantiate\n"
          "(1) a file")
    e = ActorDiedError(RayTaskError("MapWorker.__init__", tb, ValueError("x"), actor_id=None))
    assert error_line(e) == "CaptionBackendError: cannot load caption model '/m/lm': Couldn't instantiate (1) a file"


RAY_NOISE = ("Traceback", "(raylet)", "Running Dataset", "Progress bars", "Token authentication", "ray.data",
             "INFO", "streaming_executor")


@pytest.mark.slow  # two `synth2 run`s on a local Ray (~2-3 min on the 2 shared cores)
def test_synth2_run_on_ray_is_quiet_and_fails_in_one_line(tiny_world, tmp_path):
    from tests.conftest import world_spec

    world, _ = tiny_world
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(world_spec(world, tmp_path / "ok").model_dump(mode="json")))
    cmd = [sys.executable, "-m", "synth2.cli", "run", "--spec"]
    r = subprocess.run([*cmd, str(ok)], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    noisy = [ln for ln in r.stderr.splitlines() + r.stdout.splitlines() if any(n in ln for n in RAY_NOISE)]
    assert not noisy, noisy
    assert r.stdout.splitlines()[-1] == f"report: {tmp_path / 'ok'}/report.html"

    models = _fake_models(tmp_path / "m")  # passes the reference check, fails to load on a Ray worker
    d = _demo(model=str(models / "lm"))
    d["synthesis"].update(prior=str(models / "prior"), encoder={"name": f"local-dir:{models / 'clip'}"})
    d["output"]["dir"] = str(tmp_path / "bad")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(d))
    r = subprocess.run([*cmd, str(tmp_path / "bad.yaml")], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: CaptionBackendError: cannot load caption model"), r.stderr
    assert not [ln for ln in r.stderr.splitlines() + r.stdout.splitlines() if any(n in ln for n in RAY_NOISE)]
    progress = json.loads((tmp_path / "bad" / "progress.json").read_text())
    assert errors[0] == f"error: {progress['error']}" and "\x1b" not in progress["error"]
