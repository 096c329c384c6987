"""The pipeline end to end: stages on batch dicts, local Ray, resume after a killed driver,
bad inputs. Models are the tiny world's, loaded through the same code as hub models."""

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from contracts.shards import Manifest, iter_samples, sha256_file
from pipeline.runner import JobConflict, LocalExecutor, run_job
from pipeline.stages import CaptionStage, ScoreStage, SynthesizeStage
from tests.conftest import world_spec

ROOT = Path(__file__).resolve().parents[2]


def test_stages_on_a_batch_dict(tiny_world, tmp_path):
    world, _ = tiny_world
    spec = world_spec(world, tmp_path)
    batch = {"index": np.array([0, 1]), "prompt": np.array(["Concepts: red circle\nCaption:"] * 2, dtype=object),
             "seed": np.array([1, 2])}
    out = CaptionStage(spec.captions.model_dump())(batch)
    assert out["caption"].shape == (2,) and out["drop"].shape == (2,)
    assert all((c != "") != (d != "") for c, d in zip(out["caption"], out["drop"]))
    scored = ScoreStage(spec.synthesis.encoder.model_dump())({**out, "caption": np.array(["a red star", "two blue stars"])})
    assert scored["text_emb"].dtype == np.float16
    assert np.allclose(np.linalg.norm(scored["text_emb"].astype(np.float32), axis=1), 1, atol=1e-2)
    syn = SynthesizeStage(spec.synthesis.model_dump())({"index": np.array([3, 4]),
                                                        "caption": np.array(["a red star", "two blue stars"])})
    assert syn["emb"].shape == (2, scored["text_emb"].shape[1]) and syn["emb"].dtype == np.float16
    assert syn["alignment"].shape == (2,)


def test_synthesize_stage_refuses_a_mismatched_prior(tiny_world, tmp_path):
    from diffusers import PriorTransformer

    world, _ = tiny_world
    prior = PriorTransformer(num_attention_heads=1, attention_head_dim=8, num_layers=1, embedding_dim=24,
                             num_embeddings=16, additional_embeddings=4)
    prior.save_pretrained(str(tmp_path / "p" / "prior"))
    import shutil

    shutil.copytree(world / "prior" / "prior_scheduler", tmp_path / "p" / "prior_scheduler")
    spec = world_spec(world, tmp_path / "out", **{"synthesis.prior": str(tmp_path / "p")})
    with pytest.raises(ValueError, match="belong together"):
        SynthesizeStage(spec.synthesis.model_dump())


def _keys(directory):
    return [s["__key__"] for s in iter_samples(directory)]


def test_end_to_end_on_local_ray(tiny_world, tmp_path, ray_local, monkeypatch):
    import ray
    import webdataset as wds

    import pipeline.dedup
    import pipeline.select_step
    from pipeline.runner import RayExecutor

    world, _ = tiny_world
    # selection over 5 blocks (one 8-request chunk each) by the hash shuffle, as a large job selects
    monkeypatch.setenv("SYNTH2_CHUNK_TARGET", "8")
    monkeypatch.setenv("SYNTH2_SELECT_ONE_TASK_MAX_ROWS", "0")  # not one task, as a job this small would be
    monkeypatch.setattr(pipeline.select_step, "BLOCK_ROWS", 8)
    monkeypatch.setattr(pipeline.dedup, "SORT_SHUFFLE_MAX_BLOCKS", 2)
    chosen, pick = [], pipeline.dedup.shuffle_strategy
    monkeypatch.setattr(pipeline.dedup, "shuffle_strategy",
                        lambda blocks: chosen.append((blocks, pick(blocks).name)) or pick(blocks))
    spec = world_spec(world, tmp_path / "job")
    stats = run_job(spec, executor=RayExecutor())
    out = tmp_path / "job"
    m = Manifest.load(out)
    assert m.complete and m.samples == stats["samples"] > 0
    assert chosen == [(5, "HASH_SHUFFLE")]
    for s in m.shards:
        assert sha256_file(out / s.name) == s.sha256
        with tarfile.open(out / s.name) as t:
            assert len(t.getnames()) == 3 * s.samples
    urls = [str(out / s.name) for s in m.shards]
    rows = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(rows) == m.samples
    assert rows[0]["json"]["source"] == "synthetic" and rows[0]["emb.npy"].dtype == np.float16
    ray_rows = ray.data.read_webdataset(urls).take_all()
    assert len(ray_rows) == m.samples
    assert len(set(_keys(out))) == m.samples
    progress = json.loads((out / "progress.json").read_text())
    assert progress["status"] == "SUCCEEDED"
    assert set(progress["stages"]) == {"caption", "score", "select", "synthesize", "shard"}
    assert progress["stages"]["synthesize"]["done"] == m.samples
    assert progress["stages"]["shard"] == progress["stages"]["shard"] | {"done": m.samples, "shards": len(m.shards),
                                                                        "status": "SUCCEEDED"}
    assert progress["stages"]["caption"]["rate_per_s"] > 0
    st = json.loads((out / "stats.json").read_text())
    assert st["requested"] == 36 and st["after_balance"] == m.samples
    assert sum(st["concept_counts_after_balance"].values()) >= m.samples or st["after_balance"] == 0
    # the same job through the plain in-process loop gives the same samples
    local = run_job(world_spec(world, tmp_path / "local"), executor=LocalExecutor())
    assert local["samples"] == stats["samples"]
    assert _keys(tmp_path / "local") == _keys(out)
    # ... byte for byte: model batches sit at fixed index boundaries, whatever the executor
    assert [(s.name, s.sha256) for s in Manifest.load(tmp_path / "local").shards] == [(s.name, s.sha256)
                                                                                     for s in m.shards]


def test_rerun_skips_everything_and_changed_spec_is_refused(tiny_world, tmp_path):
    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job")
    first = run_job(spec, executor=LocalExecutor())
    mtimes = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "job").glob("*.tar")}
    again = run_job(spec, executor=LocalExecutor())
    assert again["samples"] == first["samples"]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "job").glob("*.tar")} == mtimes
    changed = world_spec(world, tmp_path / "job", **{"captions.per_concept": 2})
    with pytest.raises(JobConflict, match="different spec"):
        run_job(changed, executor=LocalExecutor())
    forced = run_job(changed, force=True, executor=LocalExecutor())
    assert forced["requested"] == 12


def test_bad_inputs_fail_clearly_and_write_nothing(tiny_world, tmp_path):
    world, _ = tiny_world
    f = tmp_path / "a-file"
    f.write_text("x")
    with pytest.raises(JobConflict, match="is a file"):
        run_job(world_spec(world, f), executor=LocalExecutor())
    out = tmp_path / "job"
    with pytest.raises(RuntimeError, match="cannot load caption model"):
        run_job(world_spec(world, out, **{"captions.model": str(tmp_path / "missing-lm")}), executor=LocalExecutor())
    assert not list(out.glob("*.tar")) and not (out / "manifest.json").exists()
    assert json.loads((out / "progress.json").read_text())["status"] == "FAILED"
    assert not list((out / "stages").glob("captions-*"))


def _run_script(spec_path, *extra, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "pipeline" / "run.py"), "--spec", str(spec_path), *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def test_killed_driver_resumes_to_the_same_samples(tiny_world, tmp_path):
    import yaml

    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job", **{"captions.per_concept": 12, "synthesis.batch_size": 2,
                                                  "output.shard_size": 2})
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    proc = _run_script(spec_file, "--local")
    manifest = tmp_path / "job" / "manifest.json"
    deadline = time.time() + 240
    # The manifest is first written when the first shard lands and then at most twice a second, so
    # killing at its first appearance leaves most shards unwritten (however fast the machine).
    while time.time() < deadline and proc.poll() is None and not manifest.exists():
        time.sleep(0.005)
    assert proc.poll() is None, "the job finished before it could be interrupted: " + proc.stdout.read()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = Manifest.load(tmp_path / "job")
    assert not partial.complete and partial.samples >= 2, partial
    listed = {s.name for s in partial.shards}
    # Every listed shard is whole; at most the shard being finalised at the kill is on disk unlisted.
    assert len({t.name for t in (tmp_path / "job").glob("*.tar")} - listed) <= 1
    assert all(sha256_file(tmp_path / "job" / s.name) == s.sha256 for s in partial.shards)
    resumed = _run_script(spec_file, "--local")
    log, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, log[-3000:]
    run_job(world_spec(world, tmp_path / "clean", **{"captions.per_concept": 12, "synthesis.batch_size": 2,
                                                     "output.shard_size": 2}), executor=LocalExecutor())
    keys, clean = _keys(tmp_path / "job"), _keys(tmp_path / "clean")
    assert keys == clean and len(set(keys)) == len(keys)
    final = Manifest.load(tmp_path / "job")
    assert final.complete
    assert {t.name for t in (tmp_path / "job").glob("*.tar")} == {s.name for s in final.shards}
    assert not list((tmp_path / "job").glob("*.tmp"))


def test_job_output_to_an_fsspec_url(tiny_world):
    import fsspec

    world, _ = tiny_world
    url = "memory://synth2-jobs/demo"
    stats = run_job(world_spec(world, url), executor=LocalExecutor())
    m = Manifest.load(url)
    assert m.complete and m.samples == stats["samples"] > 0
    fs = fsspec.filesystem("memory")
    assert fs.exists("/synth2-jobs/demo/progress.json") and fs.exists("/synth2-jobs/demo/stats.json")
    assert len(list(iter_samples(url))) == m.samples
    again = run_job(world_spec(world, url), executor=LocalExecutor())  # resumes from the URL's manifest
    assert again["samples"] == stats["samples"]
