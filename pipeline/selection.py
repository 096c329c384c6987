"""Job-wide caption selection: concept matching, exact and near-duplicate removal, balancing.

These run on the whole job's captions (not batch by batch), in caption-index order, so the
result is the same however the captions were batched or resumed.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache

import numpy as np


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


class ConceptMatcher:
    """`match_concepts` for a whole bank at once: word n-gram look-ups instead of one regex per
    concept (O(words) per caption, not O(bank)); same answers, in bank order."""

    _cache: dict[tuple[str, ...], ConceptMatcher] = {}

    def __init__(self, bank: tuple[str, ...] | list[str]) -> None:
        self.bank = tuple(bank)
        self.table: dict[tuple[str, ...], list[int]] = {}
        for k, c in enumerate(self.bank):
            words = tuple(normalise_text(c).split())
            if words:
                self.table.setdefault(words, []).append(k)
        self.lengths = sorted({len(w) for w in self.table})

    @classmethod
    def for_bank(cls, bank: tuple[str, ...]) -> ConceptMatcher:
        if bank not in cls._cache:
            cls._cache = {bank: cls(bank)}  # one bank per job: keep only the latest
        return cls._cache[bank]

    def __call__(self, caption: str) -> list[str]:
        return self.match_normalised(normalise_text(caption))

    def match_normalised(self, text: str) -> list[str]:
        words = text.split()
        hits: set[int] = set()
        for n in self.lengths:
            for s in range(len(words) - n + 1):
                gram = words[s:s + n]
                last = gram[-1]
                for tail in (last, last[:-1] if last.endswith("s") else None, last[:-2] if last.endswith("es") else None):
                    if tail:
                        hits.update(self.table.get((*gram[:-1], tail), ()))
        return [self.bank[k] for k in sorted(hits)]


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
