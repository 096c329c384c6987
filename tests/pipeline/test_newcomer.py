"""Issue #17 points 8/9: small contracts (vLLM port, cloud extra error, no -1.0 sentinel)."""

from __future__ import annotations

import importlib.util
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


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed here")
def test_s3_without_s3fs_names_the_extra():
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
