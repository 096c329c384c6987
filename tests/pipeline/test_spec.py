import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.spec import SpecError, load_spec, parse_spec, spec_hash

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def demo() -> dict:
    return yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_specs_validate(path):
    spec = load_spec(path)
    assert spec.version == 1


def test_there_is_a_demo_spec_and_a_hub_spec():
    names = {p.name for p in CONFIGS}
    assert "demo.yaml" in names and len(names) >= 2
    hub = [load_spec(p) for p in CONFIGS if p.name != "demo.yaml"]
    assert any(s.kind == "synthesize" and s.captions.backend == "openai"
               and not s.synthesis.encoder.name.startswith("local-dir:") for s in hub)


def _set(d: dict, path: str, value):
    keys = path.split(".")
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


# (field path, bad value, the field named in the error)
BAD = [
    ("version", 2, "version"),
    ("name", "has spaces", "name"),
    ("name", "", "name"),
    ("kind", "paint", "kind"),
    ("concepts.items", [], "concepts.items"),
    ("concepts.items", ["a", "a"], "concepts.items"),
    ("concepts.per_prompt", 0, "concepts.per_prompt"),
    ("concepts.per_prompt", 17, "concepts.per_prompt"),
    ("concepts.weights", {"nope": 1.0}, "concepts"),
    ("concepts.weights", {"red circle": 0}, "concepts.weights.red circle"),
    ("captions.backend", "telepathy", "captions.backend"),
    ("captions.model", "", "captions.model"),
    ("captions.prompt", "no placeholder", "captions.prompt"),
    ("captions.per_concept", 0, "captions.per_concept"),
    ("captions.per_concept", 10**7, "captions.per_concept"),
    ("captions.batch_size", 0, "captions.batch_size"),
    ("captions.batch_size", 5000, "captions.batch_size"),
    ("captions.shots_per_prompt", 9, "captions"),
    ("captions.sampling.temperature", -0.1, "captions.sampling.temperature"),
    ("captions.sampling.temperature", 5.5, "captions.sampling.temperature"),
    ("captions.sampling.top_p", 0, "captions.sampling.top_p"),
    ("captions.sampling.top_p", 1.5, "captions.sampling.top_p"),
    ("captions.sampling.top_k", -1, "captions.sampling.top_k"),
    ("captions.sampling.max_new_tokens", 0, "captions.sampling.max_new_tokens"),
    ("captions.sampling.seed", -1, "captions.sampling.seed"),
    ("captions.min_words", 100, "captions"),
    ("captions.timeout_s", 0, "captions.timeout_s"),
    ("captions.max_retries", 21, "captions.max_retries"),
    ("captions.endpoint", "ftp://x", "captions"),
    ("scoring.near_dup_threshold", 1.5, "scoring.near_dup_threshold"),
    ("scoring.balance.method", "magic", "scoring.balance.method"),
    ("scoring.balance.cap", 0, "scoring.balance.cap"),
    ("synthesis.steps", 0, "synthesis.steps"),
    ("synthesis.steps", 1001, "synthesis.steps"),
    ("synthesis.guidance_scale", 0.5, "synthesis.guidance_scale"),
    ("synthesis.scheduler", "euler-magic", "synthesis.scheduler"),
    ("synthesis.batch_size", 0, "synthesis.batch_size"),
    ("synthesis.encoder.name", "", "synthesis.encoder.name"),
    ("output.shard_size", 0, "output.shard_size"),
    ("output.name", "../escape", "output.name"),
    ("output.dir", "", "output.dir"),
    ("resources.caption.num_gpus", -1, "resources.caption.num_gpus"),
    ("resources.synthesize.concurrency", 0, "resources.synthesize.concurrency"),
    ("captions.unknown_knob", 1, "captions.unknown_knob"),
    ("surprise", {}, "surprise"),
]


@pytest.mark.parametrize("path,value,field", BAD, ids=[f"{p}={v!r}" for p, v, _ in BAD])
def test_every_bound_is_enforced_and_named(path, value, field):
    d = demo()
    _set(d, path, value)
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    assert any(p.startswith(field + ":") for p in e.value.problems), e.value.problems
    assert all("(got " in p for p in e.value.problems)


def test_openai_backend_needs_an_endpoint():
    d = demo()
    d["captions"]["backend"] = "openai"
    with pytest.raises(SpecError, match="endpoint"):
        parse_spec(d)


def test_kind_decides_required_sections():
    d = demo()
    del d["synthesis"]
    with pytest.raises(SpecError, match="synthesis"):
        parse_spec(d)
    embed = {"version": 1, "name": "real", "kind": "embed", "output": {"dir": "out"},
             "input": {"shards": ["data/train-{000000..000003}.tar"], "encoder": {"name": "ViT-B-32"}}}
    assert parse_spec(embed).kind == "embed"


def test_hash_ignores_resources_and_output_dir_but_not_content():
    d = demo()
    base = spec_hash(parse_spec(d))
    d2 = copy.deepcopy(d)
    d2["resources"]["caption"]["concurrency"] = 7
    d2["output"]["dir"] = "elsewhere"
    assert spec_hash(parse_spec(d2)) == base
    d2["output"]["shard_size"] = 7
    assert spec_hash(parse_spec(d2)) != base
    d2["output"]["shard_size"] = d["output"]["shard_size"]
    d2["captions"]["per_concept"] = 3
    assert spec_hash(parse_spec(d2)) != base


def test_load_errors_are_clear(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("version: [1,\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "spec.json").write_text(json.dumps(demo()))
    assert load_spec(tmp_path / "spec.json").name == "demo"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "synth2.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_validate_prints_each_problem_and_fails(tmp_path):
    d = demo()
    d["synthesis"]["steps"] = 0
    d["captions"]["bogus"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(d))
    r = _cli("spec", "validate", str(bad))
    assert r.returncode == 1
    assert "synthesis.steps: Input should be greater than or equal to 1 (got 0)" in r.stderr
    assert "captions.bogus: Extra inputs are not permitted (got true)" in r.stderr
    ok = _cli("spec", "validate", "--schema-only", str(ROOT / "configs" / "demo.yaml"))  # world/ may be unbuilt
    assert ok.returncode == 0 and "ok" in ok.stdout


def test_cli_schema_is_json_schema():
    r = _cli("spec", "schema")
    schema = json.loads(r.stdout)
    assert r.returncode == 0
    assert {"version", "name", "output"} <= set(schema["required"])
    assert schema["additionalProperties"] is False


def test_demo_spec_hash_is_stable_across_releases():
    # Output directories are keyed by the spec hash: a release that changed it would stop every existing job
    # from resuming. New optional sections (clrs, consumer, the pixel fields) must leave old specs' hashes alone.
    from pipeline.spec import spec_hash

    assert spec_hash(load_spec(ROOT / "configs" / "demo.yaml")).startswith("7e0df69dc1e9")
