from collections import Counter

import numpy as np
import pytest

from pipeline.balance import balance
from pipeline.prompts import build_requests, concept_counts
from pipeline.selection import dedup, match_concepts
from tests.conftest import world_spec


def test_match_concepts_whole_words_and_plurals():
    bank = ["red circle", "blue star", "circle", "cat"]
    assert match_concepts("Two red circles above a blue star.", bank) == ["red circle", "blue star", "circle"]
    assert match_concepts("a bred circlet", bank) == []
    assert match_concepts("a concatenated word", bank) == []


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_dedup_exact_and_near_across_blocks():
    texts = ["a red star", "A red star!", "a blue star", "a blue star nearly", "a green circle"]
    emb = _unit([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0.01, 1, 0], [0, 0, 1]])
    for block in (1, 2, 100):  # the result must not depend on how the job was blocked
        keep, nearest, reasons = dedup(texts, emb, threshold=0.99, block=block)
        assert keep.tolist() == [True, False, True, False, True]
        assert reasons == {"exact_duplicate": 1, "near_duplicate": 1}
        assert nearest[0] == -1.0 and nearest[3] > 0.99
    keep, _, _ = dedup(texts, emb, threshold=1.01, exact=False)
    assert keep.all()


def test_cap_balancing_flattens_a_skewed_distribution_deterministically():
    concepts = [["common"]] * 1000 + [["rare"]] * 20 + [["mid"]] * 100 + [[]] * 5
    idx = list(range(len(concepts)))
    keep = balance(concepts, idx, "cap", cap=50, seed=1)
    after = Counter(c[0] if c else "none" for c, k in zip(concepts, keep) if k)
    assert after["rare"] == 20 and after["none"] == 5
    assert 30 <= after["common"] <= 75 and 30 <= after["mid"] <= 75
    assert (balance(concepts, idx, "cap", cap=50, seed=1) == keep).all()
    assert (balance(concepts, idx, "cap", cap=50, seed=2) != keep).any()
    assert balance(concepts, idx, "none").all()


def test_target_balancing_approaches_the_target_shares():
    concepts = [["a"]] * 600 + [["b"]] * 300 + [["c"]] * 100
    keep = balance(concepts, list(range(1000)), "target", target={"a": 1, "b": 1, "c": 1}, seed=0)
    after = Counter(c[0] for c, k in zip(concepts, keep) if k)
    assert after["c"] == 100 and 70 <= after["a"] <= 130 and 70 <= after["b"] <= 130
    with pytest.raises(ValueError, match="unknown balance method"):
        balance(concepts, list(range(1000)), "magic")


def test_requests_follow_the_spec(tmp_path):
    spec = world_spec(tmp_path, tmp_path / "out", **{"concepts.per_prompt": 2, "captions.shots_per_prompt": 2})
    reqs = build_requests(spec)
    assert len(reqs) == 6 * 6
    assert Counter(r.concepts[0] for r in reqs) == {c: 6 for c in spec.concepts.items}
    assert all(len(set(r.concepts)) == 2 for r in reqs)
    assert all(r.prompt.count("Caption:") == 3 and r.prompt.endswith("Caption:") for r in reqs)
    assert len({r.seed for r in reqs}) == len(reqs)
    assert build_requests(spec) == reqs


def test_concept_weights_share_out_the_captions(tmp_path):
    items = ["red circle", "red square", "red triangle", "red star", "red hexagon", "red diamond"]
    spec = world_spec(tmp_path, tmp_path / "out", **{"concepts.weights": {items[0]: 4.0, items[1]: 2.0}})
    counts = concept_counts(spec)
    assert sum(counts.values()) == 36 and counts[items[0]] == 24 and counts[items[1]] == 12
