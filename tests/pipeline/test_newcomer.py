"""Issue #17 points 8/9: small contracts (vLLM port, cloud extra error, no -1.0 sentinel)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from contracts.storage import Store

ROOT = Path(__file__).resolve().parents[2]


def test_vllm_config_port_differs_from_serve_default():
    spec = yaml.safe_load((ROOT / "configs/hub-vitl14-vllm.yaml").read_text())
    assert ":8000/" not in spec["captions"]["endpoint"]


def test_cloud_extra_declared():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("s3fs") for d in extras["cloud"])
    assert any(d.startswith("gcsfs") for d in extras["cloud"])


def test_s3_without_s3fs_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as where it is not installed (import raises ImportError)
    with pytest.raises(ImportError, match=r"synth2\[cloud\]"):
        Store("s3://bucket/job")


def test_memory_store_still_works():
    assert not Store("memory://newcomer/job").local


@pytest.mark.slow  # a whole tiny job: ~45 s on the 2 shared cores
def test_nearest_kept_cosine_is_null_not_minus_one(tiny_world, tmp_path):
    from contracts.shards import iter_samples
    from pipeline.runner import LocalExecutor, run_job
    from tests.conftest import world_spec

    world, _ = tiny_world
    run_job(world_spec(world, tmp_path / "job"), executor=LocalExecutor())
    got = [s["json"]["scores"]["nearest_kept_cosine"] for s in iter_samples(tmp_path / "job")]
    assert got and None in got  # the first kept caption of a cluster has no earlier neighbour
    assert all(v is None or -1.0 < v <= 1.0 for v in got)


# ---------------------------------------------------------------- #17 point 8: a manifest that describes itself

def _write_shards(directory, n=7, dim=8):
    import numpy as np

    from contracts.shards import ShardWriter, make_sample, sample_key

    w = ShardWriter(directory, "t", 3)
    for i in range(n):
        e = np.random.default_rng(i).normal(size=dim)
        w.write(make_sample(sample_key("job", i), f"caption {i}", e / np.linalg.norm(e), {"source": "synthetic"}))
    return w.close()


def test_manifest_describes_its_embeddings(tmp_path):
    from contracts.shards import Manifest

    _write_shards(tmp_path, dim=12)
    m = Manifest.load(tmp_path)
    assert m.embedding == {"key": "emb.npy", "dim": 12, "dtype": "float16", "normalization": "l2"}
    assert m.created_at and m.created_at.endswith("+00:00")
    assert "embedding" not in m.extra and "created_at" not in m.extra


def test_old_manifest_still_loads(tmp_path):
    import json

    from contracts.shards import Manifest, shard_paths

    old = {"version": 1, "name": "t", "samples": 3, "complete": True, "spec_hash": None, "spec": None,
           "shards": [{"name": "t-000000.tar", "samples": 3, "bytes": 10, "sha256": "0" * 64, "first_index": 0}],
           "kept": 3}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = Manifest.load(tmp_path)
    assert m.samples == 3 and m.embedding is None and m.models is None and m.extra == {"kept": 3}
    assert shard_paths(tmp_path)[0].endswith("t-000000.tar")
    assert Manifest(**{**vars(m)}).to_dict()["kept"] == 3


def _world_copy(world, dest):
    import shutil

    for name in ("lm", "prior", "clip"):
        shutil.copytree(world / name, dest / name)
    return dest


def test_models_described_with_sha256_and_keys_survive_a_move(tiny_world, tmp_path):
    import hashlib

    from pipeline.job import sample_key_id
    from pipeline.model_refs import describe_models
    from pipeline.spec import spec_hash
    from tests.conftest import world_spec

    world, _ = tiny_world
    a = world_spec(world, tmp_path / "job")
    models = {d["field"]: d for d in describe_models(a)}
    assert set(models) == {"captions.model", "synthesis.prior", "synthesis.encoder.name"}
    weights = (world / "lm" / "model.safetensors").read_bytes()
    assert models["captions.model"]["files"]["model.safetensors"] == hashlib.sha256(weights).hexdigest()
    assert models["synthesis.encoder.name"]["ref"] == f"local-dir:{world / 'clip'}"

    moved = _world_copy(world, tmp_path / "elsewhere")
    b = world_spec(moved, tmp_path / "job")
    assert spec_hash(a) != spec_hash(b)  # the spec names other paths...
    assert sample_key_id(a) == sample_key_id(b)  # ...but the same models: the same sample keys
    (moved / "lm" / "config.json").write_text((moved / "lm" / "config.json").read_text() + " ")
    assert sample_key_id(world_spec(moved, tmp_path / "job")) != sample_key_id(a)  # another model: other keys


def test_hub_and_pkg_models_described(tmp_path, monkeypatch):
    from pipeline.model_refs import describe_models
    from pipeline.spec import parse_spec

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    snap = tmp_path / "hub" / "models--kakaobrain--karlo-v1-alpha"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0123abcd" * 5)
    (snap / "blobs").mkdir()
    (snap / "blobs" / ("ab" * 32)).write_bytes(b"weights")
    (snap / "snapshots" / ("0123abcd" * 5) / "prior").mkdir(parents=True)
    (snap / "snapshots" / ("0123abcd" * 5) / "prior" / "model.safetensors").symlink_to(snap / "blobs" / ("ab" * 32))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = parse_spec(yaml.safe_load((ROOT / "configs/hub-vitl14-vllm.yaml").read_text()))
    d = {m["field"]: m for m in describe_models(spec)}
    assert d["synthesis.prior"] == {"field": "synthesis.prior", "ref": "kakaobrain/karlo-v1-alpha", "kind": "hub",
                                    "revision": "0123abcd" * 5, "files": {"prior/model.safetensors": "ab" * 32}}
    assert d["synthesis.encoder.name"]["kind"] == "open_clip" and d["synthesis.encoder.name"]["pretrained"] == "openai"
    assert d["captions.model"]["kind"] == "endpoint" and d["captions.model"]["endpoint"].startswith("http://")


@pytest.mark.slow  # a whole tiny job (~45 s) plus a Ray start (~20 s) on the 2 shared cores
def test_job_manifest_self_described_and_ray_reads_it(tiny_world, tmp_path):
    import json

    import numpy as np

    from contracts.shards import iter_samples, sample_key
    from pipeline.job import sample_key_id
    from pipeline.run import init_ray
    from pipeline.runner import LocalExecutor, run_job
    from pipeline.version import __version__
    from tests.conftest import world_spec

    world, _ = tiny_world
    spec = world_spec(world, tmp_path / "job")
    run_job(spec, executor=LocalExecutor())
    m = json.loads((tmp_path / "job" / "manifest.json").read_text())
    samples = list(iter_samples(tmp_path / "job"))
    dim = samples[0]["emb.npy"].shape[0]
    assert m["embedding"] == {"key": "emb.npy", "dim": dim, "dtype": "float16", "normalization": "l2"}
    assert m["synth2_version"] == __version__ and m["created_at"]
    assert {d["field"] for d in m["models"]} == {"captions.model", "synthesis.prior", "synthesis.encoder.name"}
    assert all(len(d["sha256"]) == 64 for d in m["models"])
    assert all(abs(np.linalg.norm(s["emb.npy"].astype(np.float32)) - 1) < 1e-2 for s in samples)
    key_id = sample_key_id(spec)
    assert [s["__key__"] for s in samples] == [sample_key(key_id, s["json"]["index"]) for s in samples]
    gen = samples[0]["json"]["generator"]  # the models as the spec names them, with the sha256 of their files
    assert gen["captions"]["model"] == spec.captions.model and gen["prior"] == spec.synthesis.prior
    assert gen["sha256"] == {d["field"]: d["sha256"] for d in m["models"]}

    # README: ray.data.read_webdataset on a job directory, skipping manifest.json and the other files
    init_ray(num_cpus=1)
    import ray

    try:
        rows = ray.data.read_webdataset(str(tmp_path / "job"), file_extensions=["tar"]).take_all()
    finally:
        ray.shutdown()
    assert len(rows) == m["samples"]
    assert sorted(r["__key__"] for r in rows) == sorted(s["__key__"] for s in samples)
    assert rows[0]["emb.npy"].shape == (dim,)
