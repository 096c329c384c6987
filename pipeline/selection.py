"""Job-wide caption selection: concept matching, exact and near-duplicate removal, balancing.

These run on the whole job's captions (not batch by batch), in caption-index order, so the
result is the same however the captions were batched or resumed.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np

from pipeline.prompts import derive_seed


def normalise_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w ]+", " ", text.lower()).split())


@lru_cache(maxsize=4096)
def _concept_re(concept: str) -> re.Pattern:
    words = [re.escape(w) for w in normalise_text(concept).split()]
    # the last word may be plural ("red circles" mentions "red circle")
    return re.compile(r"\b" + r" ".join(words) + r"(?:s|es)?\b")


def match_concepts(caption: str, concepts: list[str]) -> list[str]:
    """The bank concepts a caption mentions (whole words, last word possibly plural)."""
    text = normalise_text(caption)
    return [c for c in concepts if _concept_re(c).search(text)]


def dedup(texts: list[str], emb: np.ndarray, threshold: float, exact: bool = True,
          block: int = 2048) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Greedy in index order: keep a caption unless an earlier kept one is identical (after
    normalisation) or has cosine >= `threshold`. Returns (keep mask, each caption's highest
    cosine to an earlier kept caption, counts of removals by reason).

    Cost is O(N x kept) dot products in blocks: fine to ~10^6 captions on a GPU, slow on CPU.
    """
    n = len(texts)
    keep = np.zeros(n, dtype=bool)
    nearest = np.full(n, -1.0, dtype=np.float32)
    reasons: Counter = Counter()
    seen: set[str] = set()
    e = emb.astype(np.float32)
    kept_idx: list[int] = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        prior = e[kept_idx] if kept_idx else np.zeros((0, e.shape[1]), np.float32)
        sims_prior = e[start:stop] @ prior.T if len(prior) else np.zeros((stop - start, 0), np.float32)
        sims_block = e[start:stop] @ e[start:stop].T
        block_kept: list[int] = []
        for j in range(stop - start):
            i = start + j
            norm = normalise_text(texts[i])
            best = max(sims_prior[j].max(initial=-1.0), sims_block[j, block_kept].max(initial=-1.0))
            nearest[i] = best
            if exact and norm in seen:
                reasons["exact_duplicate"] += 1
                continue
            if best >= threshold:
                reasons["near_duplicate"] += 1
                continue
            keep[i] = True
            seen.add(norm)
            block_kept.append(j)
        kept_idx += [start + j for j in block_kept]
    return keep, nearest, reasons


def balance(concepts: list[list[str]], indices: list[int], method: str, cap: int | None = None,
            target: dict[str, float] | None = None, seed: int = 0) -> np.ndarray:
    """Per-concept rebalancing (MetaCLIP / SynthCLIP style). `method="cap"`: keep a caption with
    probability t / count(its rarest concept), t = `cap` (default: the median count);
    `method="target"`: keep so that concept shares approach `target`. Returns a keep mask."""
    n = len(concepts)
    if method == "none" or n == 0:
        return np.ones(n, dtype=bool)
    counts = Counter(c for cs in concepts for c in set(cs))
    if method == "cap":
        t = cap if cap is not None else int(np.median(list(counts.values()))) if counts else 1
        quota = {c: t for c in counts}
    elif method == "target":
        total_share = sum(target.values())
        # the largest total that no concept's available count caps below its target
        scale = min((counts.get(c, 0) / (s / total_share) for c, s in target.items() if s > 0), default=0)
        quota = {c: target.get(c, 0) / total_share * scale for c in counts}
    else:
        raise ValueError(f"unknown balance method {method!r}; expected none, cap or target")
    keep = np.zeros(n, dtype=bool)
    for k, (cs, idx) in enumerate(zip(concepts, indices, strict=False)):
        if not cs:
            keep[k] = method == "cap"  # captions that name no concept are not capped
            continue
        p = min(min(quota.get(c, 0) / counts[c], 1.0) for c in set(cs))
        u = np.random.default_rng(derive_seed("balance", seed, idx)).random()
        keep[k] = u < p
    return keep
