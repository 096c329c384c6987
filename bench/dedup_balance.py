"""Target balancing: how closely the kept concept shares hit the target, the previous rule
(per-caption Bernoulli at min over its concepts of quota/count, quotas from single-concept
arithmetic) against pipeline/dedup.py's (per-concept rates fitted to the target on the concept
signature counts, each signature keeping exactly its quota by a seeded hash rank).

    .venv/bin/python bench/dedup_balance.py      # seconds; writes bench/results/dedup_balance.json
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.balance import balance  # noqa: E402
from pipeline.prompts import derive_seed  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def previous_balance(concepts: list[list[str]], target: dict[str, float], seed: int) -> np.ndarray:
    """The rule selection.balance used before (method target), verbatim in effect."""
    counts = Counter(c for cs in concepts for c in set(cs))
    total_share = sum(target.values())
    scale = min((counts.get(c, 0) / (s / total_share) for c, s in target.items() if s > 0), default=0)
    quota = {c: target.get(c, 0) / total_share * scale for c in counts}
    keep = np.zeros(len(concepts), dtype=bool)
    for k, cs in enumerate(concepts):
        if cs:
            p = min(min(quota.get(c, 0) / counts[c], 1.0) for c in set(cs))
            keep[k] = np.random.default_rng(derive_seed("balance", seed, k)).random() < p
    return keep


def scenario(name: str, per_concept: int, per_prompt: int, target: dict[str, float], seeds: int = 20) -> dict:
    bank = [f"c{i}" for i in range(6)]
    out = {"name": name, "captions": per_concept * len(bank), "concepts_per_caption": per_prompt, "target": target}
    for rule in ("previous", "fitted"):
        errs, kept, worst = [], [], 0.0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            concepts = [[c, *rng.choice([o for o in bank if o != c], per_prompt - 1, replace=False).tolist()]
                        for c in bank for _ in range(per_concept)]
            keep = (previous_balance(concepts, target, seed) if rule == "previous"
                    else balance(concepts, list(range(len(concepts))), "target", target=target, seed=seed))
            after = Counter(c for cs, k in zip(concepts, keep, strict=True) if k for c in set(cs))
            tot = sum(after[c] for c in target) or 1
            t_tot = sum(target.values())
            err = max(abs(after[c] / tot - s / t_tot) for c, s in target.items())
            errs.append(err)
            worst = max(worst, err)
            kept.append(int(keep.sum()))
        a, b = list(target)[:2]
        out[rule] = {"mean_max_share_error": round(float(np.mean(errs)), 4), "worst_max_share_error": round(worst, 4),
                     "mean_kept": round(float(np.mean(kept)), 1)}
        if per_prompt == 1:
            out[rule]["last_seed_ratio"] = round(after[a] / max(after[b], 1), 3)
    return out


def main() -> None:
    target = {"c0": 2.0, "c1": 1.0}
    rows = [scenario("demo-sized, one concept per caption", 22, 1, target),
            scenario("one concept per caption", 300, 1, target),
            scenario("two concepts per caption", 300, 2, target),
            scenario("two concepts per caption, three-way target", 300, 2, {"c0": 3.0, "c1": 2.0, "c2": 1.0})]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dedup_balance.json").write_text(json.dumps({"seeds": 20, "scenarios": rows}, indent=1) + "\n")
    for r in rows:
        print(r["name"], "| previous", r["previous"], "| fitted", r["fitted"])


if __name__ == "__main__":
    main()
