"""Job-wide selection that scales (pipeline/dedup.py): the plain and Ray Data versions give the same
kept set whatever the blocks or workers; exact dedup by text hash; near dedup against the exact
greedy method; balancing from counts; controls that are off remove nothing."""

import dataclasses
import json
import logging

import numpy as np
import pytest

from bench.dedup_data import planted_captions
from pipeline import dedup as D
from pipeline.selection import ConceptMatcher, dedup, match_concepts


def _cfg(**kw) -> D.SelectionConfig:
    return D.SelectionConfig(**{"method": "none", "cluster_size": 100, "sample_size": 300, **kw})


def _removed(sel: D.Selection, n: int) -> np.ndarray:
    out = np.ones(n, dtype=bool)
    out[sel.keep] = False
    return out


def _shuffled(data: dict, seed: int) -> dict:
    order = np.random.default_rng(seed).permutation(len(data["index"]))
    return {k: v[order] for k, v in data.items()}


def test_concept_matcher_agrees_with_the_regex_matcher():
    bank = ["red circle", "circle", "blue star", "box", "glass", "Big Red Circle", "cat"]
    words = ["a", "red", "circle", "circles", "circlet", "blue", "stars", "boxes", "box", "glasses", "glass", "big",
             "cats", "bred", "concatenated", "Red,", "CIRCLE!"]
    rng = np.random.default_rng(0)
    m = ConceptMatcher(bank)
    for _ in range(500):
        text = " ".join(rng.choice(words, size=rng.integers(1, 9)))
        assert m(text) == match_concepts(text, bank), text


def test_exact_dedup_keeps_the_first_of_each_text_in_index_order():
    texts = ["A red star!", "a blue box", "a red star", "a  RED star", "a blue box.", "a green cat"]
    batch = {"index": np.array([5, 1, 2, 9, 7, 3]), "caption": np.array(texts, dtype=object),
             "text_key": D.text_key(texts)}
    out = D.exact_kernel(batch)
    assert sorted(out["index"].tolist()) == [1, 2, 3, 5, 7, 9]
    dup = {int(i): bool(d) for i, d in zip(out["index"], out["exact_dup"])}
    assert dup == {1: False, 7: True, 2: False, 5: True, 9: True, 3: False}
    # a hash collision (forced: every key equal) does not merge different texts
    collide = D.exact_kernel({**batch, "text_key": np.zeros(6, dtype=np.int64)})
    assert {int(i): bool(d) for i, d in zip(collide["index"], collide["exact_dup"])} == dup


def test_one_cluster_is_exactly_the_greedy_method_and_many_clusters_recall_it():
    data = planted_captions(1500, dim=32, topics=3, near_rate=0.3, spread=1.0, seed=1)  # clusters cut topics
    n = len(data["index"])
    keep_ref, nearest_ref, _ = dedup(list(data["caption"]), data["text_emb"], 0.98)
    ref = ~keep_ref
    one = D.select_local(data, _cfg(cluster_size=10_000))
    assert (_removed(one, n) == ref).all()
    assert np.allclose(one.nearest, nearest_ref[one.keep], atol=1e-5)
    scores = {}
    for probes in (1, 2):  # 2: each caption also checked against its second-nearest cluster's survivors
        many = D.select_local(data, _cfg(cluster_size=100, probes=probes))
        assert many.stats["near_dup"]["clusters"] == 15 and many.stats["near_dup"]["probes"] == probes
        got = _removed(many, n)
        scores[probes] = (got & ref).sum() / ref.sum(), (got & ref).sum() / got.sum()
    assert ref.sum() > 150 and scores[1][0] >= 0.85 and scores[2][0] >= 0.98 and scores[2][0] > scores[1][0], scores
    assert min(scores[1][1], scores[2][1]) >= 0.95, scores


def test_same_kept_set_whatever_the_row_order_or_block_size():
    data = planted_captions(800, dim=16, topics=20, near_rate=0.3, spread=0.5, seed=2)
    a = D.select_local(data, _cfg(method="cap", cap=30))
    b = D.select_local(_shuffled(data, 1), _cfg(method="cap", cap=30, block=7, exact_buckets=3))
    assert a.keep.tolist() == b.keep.tolist() and a.matched.tolist() == b.matched.tolist()
    assert np.allclose(a.nearest, b.nearest, atol=1e-6)  # other block shapes: the last float bit may differ
    assert a.stats == b.stats


def test_ray_version_equals_the_local_one_across_block_counts_and_shuffles(ray_local):
    ray = ray_local
    data = planted_captions(600, dim=16, topics=12, near_rate=0.3, exact_rate=0.05, spread=0.5, seed=3)
    data["drop"][::37] = "too_short"
    cfg = _cfg(method="cap", cap=20, exact_buckets=4)
    local = D.select_local(data, cfg)
    rows = [{k: data[k][i] for k in data} for i in range(len(data["index"]))]
    # blocks of the input, partitions of every group-by; sort shuffle (blocks given, few) and hash shuffle
    # the last: no quota binds (method none), so the balance's shuffle is skipped; the drop counts given
    for blocks, partitions, known, method in ((1, 1, 1, "cap"), (5, 3, None, "cap"), (3, 2, 3, "none")):
        if method == "none":
            cfg = _cfg(method="none", exact_buckets=4)
            local = D.select_local(data, cfg)
        ds = ray.data.from_items(rows, override_num_blocks=blocks)
        drops = {"": 583, "too_short": 17} if method == "none" else None
        kept, stats = D.select_ray(ds, dataclasses.replace(cfg, partitions=partitions), blocks=known,
                                   drop_counts=drops)
        assert ds.context.shuffle_strategy.name == ("SORT_SHUFFLE_PULL_BASED" if known else "HASH_SHUFFLE")
        got = sorted(kept.take_all(), key=lambda r: r["index"])
        assert [r["index"] for r in got] == local.keep.tolist()
        assert [r["matched"] for r in got] == local.matched.tolist()
        assert np.array_equal(np.array([r["nearest"] for r in got], dtype=np.float32), local.nearest)
        assert json.loads(json.dumps(stats)) == json.loads(json.dumps(local.stats))
    assert local.stats["dropped"] == {"too_short": 17}
    assert set(local.stats["duplicates_removed"]) == {"exact_duplicate", "near_duplicate"}


def test_off_means_off():
    data = planted_captions(400, dim=16, topics=10, near_rate=0.3, exact_rate=0.1, seed=4)
    sel = D.select_local(data, _cfg(exact=False, threshold=1.0, method="none"))
    assert sel.keep.tolist() == list(range(400))
    assert sel.stats["duplicates_removed"] == {} and sel.stats["after_balance"] == 400
    on = D.select_local(data, _cfg())
    assert on.stats["duplicates_removed"]["exact_duplicate"] > 20 and on.stats["duplicates_removed"]["near_duplicate"] > 20


def _balance_rows(sigs: list[list[str]]) -> dict:
    n = len(sigs)
    return {"index": np.arange(n), "caption": np.array([f"caption {i}" for i in range(n)], dtype=object),
            "drop": np.full(n, "", dtype=object), "text_emb": np.eye(n, dtype=np.float16),
            "prompt_concepts": np.array([json.dumps(s) for s in sigs], dtype=object)}


def test_cap_balancing_keeps_exactly_the_cap_and_is_seeded():
    sigs = [["common"]] * 300 + [["rare"]] * 20 + [["mid"]] * 100
    data = _balance_rows(sigs)
    a = D.select_local(data, _cfg(method="cap", cap=50, exact=False, threshold=1.0, seed=1))
    assert a.stats["concept_counts_after_balance"] == {"common": 50, "rare": 20, "mid": 50}
    assert a.stats["balance"]["dropped"] == 420 - 120
    b = D.select_local(data, _cfg(method="cap", cap=50, exact=False, threshold=1.0, seed=2))
    assert a.keep.tolist() != b.keep.tolist()


def test_target_balancing_hits_its_ratio_warns_and_records_the_drop(caplog):
    # two concepts per caption for some: the single-concept rule misses 2:1 here, the fitted rates do not
    sigs = [["a"]] * 600 + [["a", "b"]] * 300 + [["b"]] * 100 + [["c"]] * 600
    data = _balance_rows(sigs)
    with caplog.at_level(logging.WARNING, logger="pipeline.dedup"):
        sel = D.select_local(data, _cfg(method="target", target=(("a", 2.0), ("b", 1.0)), exact=False,
                                        threshold=1.0))
    after = sel.stats["concept_counts_after_balance"]
    assert "c" not in after and abs(after["a"] / after["b"] - 2.0) < 0.03, after
    bal = sel.stats["balance"]
    assert bal["dropped"] == 1600 - sel.stats["after_balance"] and bal["dropped_fraction"] > 0.5
    assert bal["achieved_shares"]["a"] == pytest.approx(2 / 3, abs=0.01)
    assert "balancing (target) dropped" in caplog.text


def test_balance_quotas_from_counts_only():
    quota, info = D.balance_quotas({"x": 100, "y": 10, D.SEP.join(["x", "y"]): 10}, "cap", cap=10)
    assert quota == {"x": 9, "y": 5, D.SEP.join(["x", "y"]): 1} and info == {"cap": 10}
    with pytest.raises(ValueError, match="unknown balance method"):
        D.balance_quotas({"x": 1}, "magic")


def test_spec_with_dedup_off_removes_nothing(tmp_path):
    from tests.conftest import world_spec

    spec = world_spec(tmp_path, tmp_path / "out", **{"scoring.exact_dedup": False, "scoring.near_dup_threshold": 1.0,
                                                     "scoring.balance.method": "none"})
    cfg = D.SelectionConfig.from_spec(spec)
    assert not cfg.exact and not cfg.near and cfg.concepts == tuple(spec.concepts.items)
    texts = ["a red circle", "A red circle!", "a red circle"] * 20  # identical texts, identical embeddings
    n = len(texts)
    data = {"index": np.arange(n), "caption": np.array(texts, dtype=object), "drop": np.full(n, "", dtype=object),
            "text_emb": np.tile(np.eye(4, dtype=np.float16)[:1], (n, 1)),
            "prompt_concepts": np.array([json.dumps(["red circle"])] * n, dtype=object)}
    sel = D.select_local(data, dataclasses.replace(cfg, cluster_size=10))
    assert sel.keep.tolist() == list(range(n)) and sel.stats["duplicates_removed"] == {}
    on = D.select_local(data, D.SelectionConfig.from_spec(world_spec(tmp_path, tmp_path / "out2")))
    assert on.keep.tolist() == [0]
