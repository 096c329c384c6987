"""Diversity and balance of a caption set (Synth² §4: what makes synthetic captions work).

Each metric works on a job's captions or on any shard set, real or synthetic, and scales to
millions of captions in bounded memory: Vendi is exact from the d×d covariance of the embeddings
(streamed), distinct-n hashes n-grams, cluster entropy fits k-means on a sample and assigns every
caption, and the near-duplicate rate compares a sample of captions against a sample of the set
(and says so in `sampled`).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

# One line per metric: what it means, its range, and which way is better.
METRIC_DOCS: dict[str, dict] = {
    "n": {"doc": "captions measured", "range": "0..", "better": None},
    "vendi": {"doc": "Vendi score of the text embeddings (cosine kernel): the effective number of distinct captions",
              "range": "1..min(n, dim)", "better": "higher"},
    "vendi_per_caption": {"doc": "Vendi score divided by its ceiling min(n, dim)", "range": "0..1", "better": "higher"},
    "distinct_1": {"doc": "unique words / words", "range": "0..1", "better": "higher"},
    "distinct_2": {"doc": "unique word bigrams / bigrams", "range": "0..1", "better": "higher"},
    "distinct_3": {"doc": "unique word trigrams / trigrams", "range": "0..1", "better": "higher"},
    "cluster_entropy": {"doc": "entropy of k-means cluster sizes of the embeddings / log k (k-means on a sample)",
                        "range": "0..1", "better": "higher"},
    "coverage": {"doc": "share of bank concepts with at least k captions", "range": "0..1", "better": "higher"},
    "concept_entropy": {"doc": "entropy of caption counts over the bank's concepts / log(bank size)",
                        "range": "0..1", "better": "higher"},
    "concept_gini": {"doc": "Gini coefficient of caption counts over the bank's concepts (0 = equal)",
                     "range": "0..1", "better": "lower"},
    "exact_duplicate_rate": {"doc": "share of captions whose normalised text occurs earlier in the set",
                             "range": "0..1", "better": "lower"},
    "near_duplicate_rate": {"doc": "share of captions with another caption at cosine >= threshold (sampled past 2,000)",
                            "range": "0..1", "better": "lower"},
    "prior_alignment_mean": {"doc": "mean cosine between a caption's text embedding and its image embedding",
                             "range": "-1..1", "better": "higher"},
}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def vendi_score(emb: np.ndarray | Iterable[np.ndarray]) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine-similarity matrix of the rows.

    The nonzero eigenvalues of X Xᵀ/n equal those of Xᵀ X/n, so this is exact in O(n·d²) time and
    O(d²) memory; pass an iterable of row blocks to stream a large set."""
    blocks = [emb] if isinstance(emb, np.ndarray) else emb
    cov, n = None, 0
    for b in blocks:
        u = _unit(b)
        cov = u.T @ u if cov is None else cov + u.T @ u
        n += len(u)
    return vendi_from_gram(cov, n)


def vendi_from_gram(gram: np.ndarray | None, n: int) -> float:
    """The Vendi score from G = Σ uᵢᵀuᵢ over n unit rows (d×d): exp(entropy of the eigenvalues of G/n)."""
    if not n or gram is None:
        return 0.0
    lam = np.linalg.eigvalsh(gram / n)
    lam = lam[lam > 1e-12]
    return float(np.exp(-np.sum(lam * np.log(lam))))


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() else " " for c in text).split()


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Unique n-grams / n-grams over the set (n-grams hashed to 8 bytes: bounded memory per n-gram)."""
    seen, total = set(), 0
    for t in texts:
        w = _words(t)
        for i in range(len(w) - n + 1):
            seen.add(hashlib.blake2b(" ".join(w[i:i + n]).encode(), digest_size=8).digest())
            total += 1
    return len(seen) / total if total else 0.0


def cluster_entropy(emb: np.ndarray, k: int = 16, fit_sample: int = 20_000, seed: int = 0) -> float:
    """Normalised entropy of k-means cluster sizes: 1 when captions spread evenly over k clusters."""
    from sklearn.cluster import MiniBatchKMeans

    u = _unit(emb)
    k = min(k, len(u))
    if k < 2:
        return 0.0
    rng = np.random.default_rng(seed)
    fit = u[rng.choice(len(u), fit_sample, replace=False)] if len(u) > fit_sample else u
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=2048).fit(fit)
    labels = np.concatenate([km.predict(u[i:i + 65536]) for i in range(0, len(u), 65536)])
    # Clusters whose centres coincide are one cluster: with fewer distinct captions than k (duplicates
    # whose embeddings differ only by rounding), k-means would otherwise split identical captions over
    # several clusters by float noise, and all-identical captions would score above 0.
    c = km.cluster_centers_
    dist = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=2)
    first = np.argmax(dist < 1e-6, axis=1)  # the first centre within 1e-6 of each (itself at worst)
    return normalised_entropy(np.bincount(first[labels], minlength=k))


def normalised_entropy(counts: Sequence[float]) -> float:
    c = np.asarray(counts, dtype=np.float64)
    if len(c) < 2 or c.sum() <= 0:
        return 0.0
    p = c[c > 0] / c.sum()
    return float(max(0.0, -(p * np.log(p)).sum() / math.log(len(c))))


def gini(counts: Sequence[float]) -> float:
    c = np.sort(np.asarray(counts, dtype=np.float64))
    if len(c) == 0 or c.sum() <= 0:
        return 0.0
    n = len(c)
    return float((2 * np.arange(1, n + 1) - n - 1) @ c / (n * c.sum()))


def concept_counts(concepts: Iterable[Sequence[str]], bank: Sequence[str]) -> dict[str, int]:
    """Captions per bank concept (a caption counts once for each concept it shows)."""
    counts = Counter(c for cs in concepts for c in set(cs))
    return {c: int(counts.get(c, 0)) for c in bank}


def balance_metrics(counts: dict[str, int], k: int = 5) -> dict[str, float]:
    v = list(counts.values())
    return {"coverage": float(np.mean([x >= k for x in v])) if v else 0.0, "coverage_k": k,
            "concept_entropy": normalised_entropy(v), "concept_gini": gini(v)}


def exact_duplicate_rate(texts: Iterable[str]) -> float:
    seen, dup, n = set(), 0, 0
    for t in texts:
        h = hashlib.blake2b(" ".join(_words(t)).encode(), digest_size=8).digest()
        dup += h in seen
        seen.add(h)
        n += 1
    return dup / n if n else 0.0


def near_duplicate_rate(emb: np.ndarray, threshold: float = 0.95, queries: int = 2000, reference: int = 50_000,
                        seed: int = 0) -> tuple[float, bool]:
    """Share of captions with another at cosine ≥ threshold; exact up to `queries` × `reference`,
    estimated from random samples beyond. Returns (rate, sampled)."""
    u = _unit(emb).astype(np.float32)
    n = len(u)
    if n < 2:
        return 0.0, False
    rng = np.random.default_rng(seed)
    sampled = n > queries or n > reference
    q = rng.choice(n, queries, replace=False) if n > queries else np.arange(n)
    ref = rng.choice(n, reference, replace=False) if n > reference else np.arange(n)
    hits = 0
    for i in range(0, len(q), 512):
        qi = q[i:i + 512]
        sim = u[qi] @ u[ref].T
        sim[qi[:, None] == ref[None, :]] = -1.0  # not itself
        hits += int((sim.max(axis=1) >= threshold).sum())
    return hits / len(q), sampled


def alignment_summary(alignment: np.ndarray) -> dict:
    a = np.asarray(alignment, dtype=np.float64)
    if not len(a):
        return {"prior_alignment_mean": None}
    q = np.quantile(a, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"prior_alignment_mean": float(a.mean()), "prior_alignment_std": float(a.std()),
            "prior_alignment_quantiles": {p: float(v) for p, v in zip(("p05", "p25", "p50", "p75", "p95"), q)}}


def caption_metrics(texts: Sequence[str], text_emb: np.ndarray, concepts: Sequence[Sequence[str]] | None = None,
                    bank: Sequence[str] | None = None, alignment: np.ndarray | None = None, *, coverage_k: int = 5,
                    clusters: int = 16, near_dup_threshold: float = 0.95, seed: int = 0) -> dict:
    """Every metric of METRIC_DOCS over one caption set."""
    out: dict = {"n": len(texts)}
    if not len(texts):
        return out
    dim = text_emb.shape[1]
    out["vendi"] = vendi_score(np.asarray(text_emb))
    out["vendi_per_caption"] = out["vendi"] / min(len(texts), dim)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    k = min(clusters, max(2, len(texts) // 20))  # at least ~20 captions a cluster, else entropy is ~1 by construction
    out["cluster_entropy"] = cluster_entropy(text_emb, k, seed=seed)
    out["cluster_k"] = k
    if concepts is not None:
        bank = list(bank) if bank is not None else sorted({c for cs in concepts for c in cs})
        counts = concept_counts(concepts, bank)
        out |= balance_metrics(counts, coverage_k)
        out["concept_counts"] = counts
    out["exact_duplicate_rate"] = exact_duplicate_rate(texts)
    out["near_duplicate_rate"], out["near_duplicate_sampled"] = near_duplicate_rate(text_emb, near_dup_threshold,
                                                                                    seed=seed)
    out["near_duplicate_threshold"] = near_dup_threshold
    if alignment is not None:
        out |= alignment_summary(alignment)
    return out
