"""Caption requests from a spec: which concepts each prompt names, its few-shot examples, its seed.

Request `i` depends only on the spec and `i`, so any subset of requests can be rebuilt on resume.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pipeline.spec import JobSpec


@dataclass(frozen=True)
class Request:
    index: int
    concepts: tuple[str, ...]
    prompt: str
    seed: int


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from any parts (stable across processes and Python versions)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") & 0x7FFFFFFF


def concept_counts(spec: JobSpec) -> dict[str, int]:
    """Captions requested per concept: `per_concept` each, or shared out by `weights`."""
    c = spec.concepts
    n = spec.captions.per_concept
    if not c.weights:
        return {k: n for k in c.items}
    total = n * len(c.items)
    w = np.array([c.weights.get(k, 0.0) for k in c.items], dtype=float)
    if w.sum() == 0:
        raise ValueError("concepts.weights: every listed concept has weight 0")
    raw = w / w.sum() * total
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: total - counts.sum()]] += 1
    return dict(zip(c.items, counts.tolist(), strict=False))


def format_prompt(template: str, concepts: tuple[str, ...]) -> str:
    return template.replace("{concepts}", ", ".join(concepts))


class RequestPlan:
    """The job's caption requests by index, built on demand: `plan[i]` is request `i` (the same as
    `build_requests(spec)[i]`) in O(concepts) memory, so a worker rebuilds any chunk from its index."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        counts = concept_counts(spec)
        self.items = list(spec.concepts.items)
        self.ends = np.cumsum([counts[k] for k in self.items])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def _names(self, i: int, first: str, rng: np.random.Generator) -> list[str]:
        names = [first]
        if self.spec.concepts.per_prompt > 1:
            others = [k for k in self.items if k != first]
            take = min(self.spec.concepts.per_prompt - 1, len(others))
            names += [others[j] for j in rng.choice(len(others), size=take, replace=False)]
        return names

    def concepts(self, index) -> list[tuple[str, ...]]:
        """The concepts each of the requests `index` names (`plan[i].concepts` for each i), without
        building the prompts: a look-up per request when prompts name one concept each."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) and not (0 <= index.min() and index.max() < len(self)):
            raise IndexError(f"requests {index.min()}..{index.max()} out of range (the job has {len(self)})")
        firsts = [self.items[j] for j in np.searchsorted(self.ends, index, side="right")]
        if self.spec.concepts.per_prompt <= 1:
            return [(f,) for f in firsts]
        seed = self.spec.captions.sampling.seed
        return [tuple(self._names(int(i), f, np.random.default_rng(derive_seed("request", seed, int(i)))))
                for i, f in zip(index, firsts, strict=True)]

    def __getitem__(self, i: int) -> Request:
        if not 0 <= i < len(self):
            raise IndexError(f"request {i} out of range (the job has {len(self)})")
        cap = self.spec.captions
        seed = cap.sampling.seed
        first = self.items[int(np.searchsorted(self.ends, i, side="right"))]
        rng = np.random.default_rng(derive_seed("request", seed, i))
        names = self._names(i, first, rng)
        shots = ""
        if cap.shots_per_prompt:
            pick = rng.choice(len(cap.few_shot), size=cap.shots_per_prompt, replace=False)
            for j in pick:
                ex = cap.few_shot[int(j)]
                shots += format_prompt(cap.prompt, tuple(ex.concepts)) + " " + ex.caption + "\n"
        prompt = shots + format_prompt(cap.prompt, tuple(names))
        return Request(i, tuple(names), prompt, derive_seed("caption", seed, i))


def build_requests(spec: JobSpec) -> list[Request]:
    """Every caption request of the job, in index order (small jobs and tests; workers use RequestPlan)."""
    plan = RequestPlan(spec)
    return [plan[i] for i in range(len(plan))]
