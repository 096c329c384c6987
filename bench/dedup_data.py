"""Synthetic caption embeddings for the dedup benchmark and tests: clustered random unit vectors
(topics) with near duplicates planted at a known rate and exact-duplicate texts at another."""

from __future__ import annotations

import json

import numpy as np


def planted_captions(n: int, dim: int = 384, topics: int = 2000, near_rate: float = 0.2, exact_rate: float = 0.01,
                     spread: float = 0.7, dup_cos: tuple[float, float] = (0.95, 0.999), seed: int = 0,
                     concepts: int = 50) -> dict[str, np.ndarray]:
    """`n` captions in index order. Each is a topic centre plus isotropic noise (cosine between two
    captions of one topic about 1 / (1 + spread^2)); with probability `near_rate` a caption is
    instead a perturbed copy of an earlier one at a cosine drawn from `dup_cos`, and with
    probability `exact_rate` its text repeats an earlier caption's (with the same embedding)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topic = rng.integers(0, topics, n)
    emb = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 65536):  # in chunks: 10^6 x 384 stays within a few hundred MB
        x = centres[topic[s:s + 65536]] + rng.standard_normal((len(topic[s:s + 65536]), dim), dtype=np.float32) * (
            spread / np.sqrt(dim))
        emb[s:s + 65536] = x / np.linalg.norm(x, axis=1, keepdims=True)
    texts = np.array([f"caption {i} about topic {t}" for i, t in enumerate(topic.tolist())], dtype=object)
    kind = rng.random(n)
    parent = (rng.random(n) * np.arange(n)).astype(np.int64)
    cos = rng.uniform(*dup_cos, n)
    for i in np.nonzero((kind < near_rate + exact_rate) & (np.arange(n) > 0))[0]:  # in order: chains copy copies
        p = parent[i]
        topic[i] = topic[p]
        if kind[i] < exact_rate:
            emb[i], texts[i] = emb[p], texts[p]
            continue
        e = emb[p].astype(np.float32)
        e /= np.linalg.norm(e)
        o = rng.standard_normal(dim, dtype=np.float32)
        o -= (o @ e) * e
        emb[i] = cos[i] * e + np.sqrt(1 - cos[i] ** 2) * (o / np.linalg.norm(o))
        texts[i] = f"caption {i} near {p}"
    names = [f"concept {c}" for c in range(concepts)]
    prompt = np.array([json.dumps([names[t % concepts]]) for t in topic], dtype=object)
    return {"index": np.arange(n, dtype=np.int64), "caption": texts, "drop": np.full(n, "", dtype=object),
            "text_emb": emb, "prompt_concepts": prompt}
