"""The spec's strict numbers and its bound on job size (issue #14 points 5 and 6, #23's bound on job size)."""

from __future__ import annotations

import copy

import pytest

from pipeline import spec as spec_mod
from pipeline.spec import SpecError, load_spec, parse_spec

DEMO = load_spec("configs/demo.yaml").model_dump(mode="json")


def _with(path: str, value):
    d = copy.deepcopy(DEMO)
    *head, last = path.split(".")
    x = d
    for k in head:
        x = x[k]
    x[last] = value
    return d


@pytest.mark.parametrize("path,value", [("captions.per_concept", True), ("captions.per_concept", "20"),
                                        ("captions.per_concept", 20.0), ("version", True),
                                        ("synthesis.guidance_scale", "2.5"), ("scoring.exact_dedup", "yes")])
def test_numbers_and_booleans_are_strict(path, value):
    with pytest.raises(SpecError) as e:
        parse_spec(_with(path, value))
    assert e.value.problems[0].startswith(f"{path}: ")


def test_real_numbers_still_pass():
    spec = parse_spec(_with("synthesis.guidance_scale", 2))  # an int is a number
    assert spec.synthesis.guidance_scale == 2.0


def test_requests_bound_is_named_by_the_validator(monkeypatch):
    big = _with("captions.per_concept", 1_000_000)
    big["concepts"]["items"] = [f"c{i}" for i in range(1000)]
    with pytest.raises(SpecError) as e:
        parse_spec(big)
    (line,) = e.value.problems
    assert line.startswith("captions.per_concept: len(concepts.items) x captions.per_concept = 1000000000 requests")
    assert "SYNTH2_SPEC_MAX_REQUESTS" in line
    monkeypatch.setattr(spec_mod, "MAX_REQUESTS", 10**9)  # configurable
    assert spec_mod.requests(parse_spec(big)) == 10**9


def test_clrs_trajectories_are_bounded():
    d = load_spec("configs/clrs.yaml").model_dump(mode="json")
    d["clrs"]["train"]["count"] = 10_000_000
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    assert e.value.problems[0].startswith("clrs: (train + val + test counts) x algorithms = ")


def test_error_lines_never_serialise_a_huge_input():
    d = _with("concepts.items", [["x"] * 100_000])
    with pytest.raises(SpecError) as e:
        parse_spec(d)
    assert len(e.value.problems[0]) < 200
