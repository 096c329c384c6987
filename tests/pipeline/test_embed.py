"""The `embed` job: real image-text shards → encoder embeddings in the sample contract."""

import numpy as np
import pytest
import torch

from contracts.shards import Manifest, iter_samples, shard_paths
from generators.encoders import Encoder
from pipeline.runner import LocalExecutor, run_job
from pipeline.spec import parse_spec


def _spec(world, shards, out):
    return parse_spec({"version": 1, "name": "real", "kind": "embed", "output": {"dir": str(out), "shard_size": 50},
                       "input": {"shards": shards, "encoder": {"name": f"local-dir:{world / 'clip'}"}, "batch_size": 64}})


def test_embed_real_shards(tiny_world, tmp_path):
    world, info = tiny_world
    inputs = [str(p) for p in shard_paths(world / "data" / "val")]
    stats = run_job(_spec(world, inputs, tmp_path / "out"), executor=LocalExecutor())
    assert stats["samples"] == info["splits"]["val"]["samples"]
    got = list(iter_samples(tmp_path / "out"))
    src = list(iter_samples(world / "data" / "val"))
    assert [g["txt"] for g in got] == [s["txt"] for s in src]
    assert got[0]["json"]["source"] == "real" and got[0]["json"]["scene"] == src[0]["json"]["scene"]
    # the embedding is the encoder's embedding of the stored image
    import io

    from PIL import Image

    enc = Encoder(f"local-dir:{world / 'clip'}")
    ref = enc.encode_images([Image.open(io.BytesIO(src[3]["png"]))])[0]
    assert torch.allclose(torch.from_numpy(got[3]["emb.npy"].astype(np.float32)), ref, atol=2e-2)
    assert Manifest.load(tmp_path / "out").complete


def test_brace_patterns_expand(tiny_world, tmp_path):
    world, info = tiny_world
    n = len(shard_paths(world / "data" / "val"))
    pattern = str(world / "data" / "val" / f"world-val-{{000000..{n - 1:06d}}}.tar")
    stats = run_job(_spec(world, [pattern], tmp_path / "out"), executor=LocalExecutor())
    assert stats["input_shards"] == n


def test_corrupt_input_shard_is_named_and_nothing_is_written(tiny_world, tmp_path):
    world, _ = tiny_world
    good = [str(p) for p in shard_paths(world / "data" / "val")]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(open(good[0], "rb").read()[:700] + b"\x00garbage" * 50)
    with pytest.raises(ValueError, match="bad.tar"):
        run_job(_spec(world, good + [str(bad)], tmp_path / "out"), executor=LocalExecutor())
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tar"))
    with pytest.raises(ValueError, match="unreadable or corrupt"):
        run_job(_spec(world, [str(tmp_path / "missing.tar")], tmp_path / "out"), executor=LocalExecutor())
