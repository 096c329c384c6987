"""Each caption metric on hand-made inputs whose answer is known."""

import math

import numpy as np
import pytest

from pipeline.metrics import (
    METRIC_DOCS,
    alignment_summary,
    balance_metrics,
    caption_metrics,
    cluster_entropy,
    concept_counts,
    distinct_n,
    exact_duplicate_rate,
    gini,
    near_duplicate_rate,
    normalised_entropy,
    vendi_score,
)


def _vendi_direct(x: np.ndarray) -> float:
    """Vendi from the n×n cosine-similarity matrix, as the paper defines it."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.linalg.eigvalsh(u @ u.T / len(u))
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


# ---------------------------------------------------------------- Vendi

def test_vendi_of_identical_rows_is_one():
    assert vendi_score(np.tile([[0.3, -1.0, 2.0, 0.5]], (17, 1))) == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 2, 5, 12])
def test_vendi_of_k_orthogonal_rows_is_k(k):
    rng = np.random.default_rng(k)
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    rows = q[:k] * rng.uniform(0.5, 3.0, size=(k, 1))  # the scale of a row does not matter (cosine kernel)
    assert vendi_score(rows) == pytest.approx(k)


def test_vendi_of_two_orthogonal_clusters_of_repeated_rows_is_two():
    a, b = np.zeros(8), np.zeros(8)
    a[0], b[3] = 1.0, 2.0
    x = np.stack([a] * 7 + [b] * 7)
    assert vendi_score(x) == pytest.approx(2.0)
    # unequal clusters: exp(entropy of (p, 1 - p))
    x = np.stack([a] * 3 + [b] * 9)
    p = 3 / 12
    assert vendi_score(x) == pytest.approx(math.exp(-(p * math.log(p) + (1 - p) * math.log(1 - p))))


@pytest.mark.parametrize("n,d", [(40, 8), (6, 24), (25, 25)])
def test_vendi_via_d_by_d_equals_the_n_by_n_eigen_computation(n, d):
    x = np.random.default_rng(n * d).normal(size=(n, d))
    assert vendi_score(x) == pytest.approx(_vendi_direct(x), rel=1e-9)
    assert 1.0 <= vendi_score(x) <= min(n, d) + 1e-9


def test_streamed_vendi_over_blocks_equals_vendi_over_the_whole_matrix():
    x = np.random.default_rng(0).normal(size=(103, 16)).astype(np.float32)
    whole = vendi_score(x)
    assert vendi_score([x[:10], x[10:11], x[11:64], x[64:]]) == pytest.approx(whole, rel=1e-9)
    assert vendi_score(x[i:i + 7] for i in range(0, len(x), 7)) == pytest.approx(whole, rel=1e-9)  # a generator
    assert vendi_score(x.astype(np.float16)) == pytest.approx(whole, rel=1e-2)  # half-precision embeddings


def test_vendi_of_nothing_is_zero():
    assert vendi_score([]) == 0.0


# ---------------------------------------------------------------- distinct-n

@pytest.mark.parametrize("n_captions", [1, 4, 10])
def test_distinct_n_of_identical_captions_is_one_over_n(n_captions):
    texts = ["A red star."] * n_captions  # three distinct words
    for n in (1, 2, 3):
        assert distinct_n(texts, n) == pytest.approx(1 / n_captions)


def test_distinct_n_counts_ngrams_over_the_set():
    texts = ["a red star", "a blue star"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # a, red, star, blue
    assert distinct_n(texts, 2) == pytest.approx(4 / 4)
    assert distinct_n(texts, 3) == pytest.approx(2 / 2)
    assert distinct_n(["Red, red RED!"], 1) == pytest.approx(1 / 3)  # words are lower-cased, punctuation split off
    assert distinct_n(["two words"], 3) == 0.0  # no trigram at all
    assert distinct_n([], 1) == 0.0


# ---------------------------------------------------------------- concept balance

@pytest.mark.parametrize("n", [2, 5, 48])
def test_entropy_and_gini_of_uniform_and_one_hot_counts(n):
    uniform = [7] * n
    one_hot = [0] * (n - 1) + [30]
    assert normalised_entropy(uniform) == pytest.approx(1.0)
    assert normalised_entropy(one_hot) == pytest.approx(0.0)
    assert gini(uniform) == pytest.approx(0.0)
    assert gini(one_hot) == pytest.approx((n - 1) / n)
    assert gini(list(reversed(one_hot))) == pytest.approx((n - 1) / n)  # order does not matter


def test_balance_metrics_on_uniform_and_one_hot_concept_counts():
    bank = ["red star", "blue circle", "green square", "pink hexagon"]
    uniform = concept_counts([[c] for c in bank for _ in range(6)], bank)
    assert uniform == dict.fromkeys(bank, 6)
    m = balance_metrics(uniform)
    assert m == pytest.approx({"coverage": 1.0, "coverage_k": 5, "concept_entropy": 1.0, "concept_gini": 0.0})
    one_hot = concept_counts([["red star"]] * 24, bank)
    m = balance_metrics(one_hot)
    assert m == pytest.approx({"coverage": 0.25, "coverage_k": 5, "concept_entropy": 0.0, "concept_gini": 0.75})


def test_coverage_counts_concepts_with_at_least_k_captions():
    counts = {"a": 5, "b": 4, "c": 10, "d": 0}
    assert balance_metrics(counts, k=5)["coverage"] == pytest.approx(2 / 4)
    assert balance_metrics(counts, k=4)["coverage"] == pytest.approx(3 / 4)
    assert balance_metrics(counts, k=1)["coverage"] == pytest.approx(3 / 4)
    assert balance_metrics(counts, k=11)["coverage"] == 0.0
    assert balance_metrics(counts, k=3)["coverage_k"] == 3


def test_concept_counts_count_a_caption_once_per_concept_and_keep_the_banks_order():
    bank = ["z", "a", "m"]
    counts = concept_counts([["a", "a", "z"], ["a"], ["not in bank"], []], bank)
    assert counts == {"z": 1, "a": 2, "m": 0}
    assert list(counts) == bank


# ---------------------------------------------------------------- duplicates

def test_exact_duplicate_rate_on_normalised_text():
    texts = ["A red star", "a red star.", "A  RED star!", "a blue star", "a red"]
    assert exact_duplicate_rate(texts) == pytest.approx(2 / 5)  # the 2nd and 3rd repeat the 1st
    assert exact_duplicate_rate(["one", "two"]) == 0.0
    assert exact_duplicate_rate([]) == 0.0


def _pair(cos: float, d: int, i: int) -> np.ndarray:
    """Two unit vectors at cosine `cos`, in the plane of axes 2i and 2i+1."""
    a, b = np.zeros(d), np.zeros(d)
    a[2 * i] = 1.0
    b[2 * i], b[2 * i + 1] = cos, math.sqrt(1 - cos ** 2)
    return np.stack([a, b])


def test_near_duplicate_rate_on_constructed_embeddings():
    d = 16
    near = np.concatenate([_pair(0.99, d, i) for i in range(4)])  # 4 pairs at cosine 0.99, pairs orthogonal
    assert near_duplicate_rate(near, threshold=0.95) == (pytest.approx(1.0), False)
    assert near_duplicate_rate(near, threshold=0.995)[0] == 0.0  # 0.99 is below this threshold
    orthogonal = np.eye(d)[:8] * 3.0
    assert near_duplicate_rate(orthogonal, threshold=0.95) == (0.0, False)
    # half the rows in near pairs, half alone
    mixed = np.concatenate([_pair(0.99, d, 0), _pair(0.99, d, 1), np.eye(d)[4:8]])
    assert near_duplicate_rate(mixed, threshold=0.95)[0] == pytest.approx(0.5)
    # a row is not its own duplicate, but an identical row is
    assert near_duplicate_rate(np.stack([np.eye(d)[0], np.eye(d)[0], np.eye(d)[1]]))[0] == pytest.approx(2 / 3)
    assert near_duplicate_rate(np.eye(d)[:1]) == (0.0, False)


def test_near_duplicate_rate_says_when_it_sampled():
    d = 16
    x = np.concatenate([_pair(0.99, d, i % 8) for i in range(60)])  # 120 rows, every one with a near twin
    rate, sampled = near_duplicate_rate(x, threshold=0.95, queries=50)
    assert sampled and rate == pytest.approx(1.0)
    rate, sampled = near_duplicate_rate(x, threshold=0.95, queries=500, reference=1000)
    assert not sampled and rate == pytest.approx(1.0)


# ---------------------------------------------------------------- cluster entropy

@pytest.mark.parametrize("k", [2, 4, 8])
def test_cluster_entropy_of_k_well_separated_equal_clusters_is_one(k):
    rng = np.random.default_rng(k)
    d = 16
    x = np.concatenate([np.eye(d)[c] * 5 + rng.normal(0, 0.05, (30, d)) for c in range(k)])
    assert cluster_entropy(x, k=k) == pytest.approx(1.0, abs=1e-9)


def test_cluster_entropy_of_identical_points_is_zero():
    # k-means on one distinct point: whatever centres it ends with, every point gets the same label,
    # so the sizes are (n, 0, 0, ...) over k clusters and the normalised entropy is 0, not 1.
    x = np.tile([[0.2, 1.0, -0.5, 3.0]], (60, 1))
    assert cluster_entropy(x, k=4) == pytest.approx(0.0)
    # the same direction at different lengths is the same caption embedding (rows are normalised)
    assert cluster_entropy(x * np.linspace(0.5, 4, 60)[:, None], k=4) == pytest.approx(0.0)
    # ... while one odd point out of 60 moves it off 0, but only a little
    x[0] = [3.0, -1.0, 0.0, 0.2]
    assert 0.0 < cluster_entropy(x, k=4) < 0.1


def test_cluster_entropy_of_two_unequal_clusters():
    d = 8
    rng = np.random.default_rng(0)
    x = np.concatenate([np.eye(d)[0] + rng.normal(0, 0.01, (30, d)), np.eye(d)[1] + rng.normal(0, 0.01, (10, d))])
    p = np.array([30, 10]) / 40
    assert cluster_entropy(x, k=2) == pytest.approx(-(p * np.log(p)).sum() / math.log(2), abs=1e-9)
    assert cluster_entropy(x[:1], k=4) == 0.0  # one caption: no clusters to spread over


# ---------------------------------------------------------------- everything together

def test_caption_metrics_gives_every_documented_metric():
    d = 16
    texts = [f"a {c} {s}" for c in ("red", "blue") for s in ("star", "circle", "square")]
    emb = np.eye(d)[:6]
    concepts = [[t.split(" ", 1)[1]] for t in texts]
    m = caption_metrics(texts, emb, concepts, alignment=np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), clusters=3,
                        coverage_k=1)
    assert set(METRIC_DOCS) <= set(m)
    assert m["n"] == 6 and m["vendi"] == pytest.approx(6.0) and m["vendi_per_caption"] == pytest.approx(1.0)
    assert m["coverage"] == 1.0 and m["concept_entropy"] == pytest.approx(1.0) and m["concept_gini"] == pytest.approx(0)
    assert m["exact_duplicate_rate"] == 0.0 and m["near_duplicate_rate"] == 0.0 and m["cluster_k"] == 2
    assert m["prior_alignment_mean"] == pytest.approx(0.35)
    assert caption_metrics([], np.zeros((0, d))) == {"n": 0}


def test_alignment_summary():
    s = alignment_summary(np.linspace(0, 1, 101))
    assert s["prior_alignment_mean"] == pytest.approx(0.5)
    assert s["prior_alignment_quantiles"] == pytest.approx({"p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75,
                                                            "p95": 0.95})
    assert alignment_summary(np.array([])) == {"prior_alignment_mean": None}


def test_every_metric_is_documented_with_a_range_and_a_direction():
    for key, d in METRIC_DOCS.items():
        assert d["doc"] and d["range"] and d["better"] in ("higher", "lower", None), key
