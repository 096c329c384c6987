"""Scores of CLRS output predictions, as the benchmark computes them, pooled over a whole test set:

- pointer, mask_one, categorical, permutation: accuracy over every (valid) position — for a single-label
  decision this is the micro-averaged F1;
- mask: binary F1 of the positive class (micro: true/false positives and negatives pooled);
- positions the benchmark marks -1 ("masked": bridges' non-edges, lcs_length's blank cells) are not scored;
- scalar: negative mean squared error.

An algorithm's score is the mean over its output features (the "micro-F1" of the CLRS tables).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from consumers.clrs.checkpoint import load_model
from consumers.clrs.data import POINTER_TYPES, Batch, Collate, SamplerDataset, ShardDataset, Spec
from consumers.clrs.model import valid_mask
from consumers.clrs.params import ClrsEvalParams


class Scorer:
    """Accumulates counts per output feature over batches; `scores()` gives the pooled figures."""

    def __init__(self, spec: Spec) -> None:
        self.spec = {k: v for k, v in spec.items() if v[0] == "output"}
        self.counts: dict[str, dict[str, float]] = {k: {"correct": 0.0, "total": 0.0, "tp": 0.0, "fp": 0.0, "fn": 0.0,
                                                        "sse": 0.0} for k in self.spec}

    def add(self, preds: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], node_mask: torch.Tensor) -> None:
        for k, (_, loc, typ) in self.spec.items():
            p, t, c = preds[k].cpu(), truth[k].cpu(), self.counts[k]
            valid = valid_mask(loc, node_mask.cpu())
            if typ == "mask":  # -1 is the benchmark's "masked": not scored
                pb, tb = p > 0.5, t > 0.5
                valid = valid & (t >= 0)
                c["tp"] += float((pb & tb & valid).sum())
                c["fp"] += float((pb & ~tb & valid).sum())
                c["fn"] += float((~pb & tb & valid).sum())
            elif typ == "scalar":
                c["sse"] += float((((p - t) ** 2) * valid).sum())
                c["total"] += float(valid.sum())
            elif typ == "mask_one" and loc != "graph":
                b = p.shape[0]
                c["correct"] += float((p.reshape(b, -1).argmax(-1) == t.reshape(b, -1).argmax(-1)).sum())
                c["total"] += b
            elif typ == "mask_one":
                c["correct"] += float(((p > 0.5) == (t > 0.5)).sum())
                c["total"] += p.numel()
            elif typ == "categorical":  # masked rows ([0, .., -1]) are not scored
                has = t.sum(-1) > 0
                v = valid & has
                c["correct"] += float(((p.argmax(-1) == t.argmax(-1)) & v).sum())
                c["total"] += float(v.sum())
            elif typ in POINTER_TYPES:
                c["correct"] += float(((p == t) & valid).sum())
                c["total"] += float(valid.sum())
            else:
                raise ValueError(f"no score for type {typ!r} ({k})")

    def scores(self) -> dict[str, dict]:
        out = {}
        for k, (_, _, typ) in self.spec.items():
            c = self.counts[k]
            if typ == "mask":
                prec = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] > 0 else 1.0
                rec = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] > 0 else 1.0
                out[k] = {"type": typ, "metric": "f1", "score": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0}
            elif typ == "scalar":
                out[k] = {"type": typ, "metric": "neg_mse", "score": -c["sse"] / max(c["total"], 1)}
            else:
                out[k] = {"type": typ, "metric": "accuracy", "score": c["correct"] / max(c["total"], 1)}
        return out


def micro_f1(scores: dict[str, dict]) -> float:
    """The algorithm's score: the mean of its output features' scores."""
    return float(np.mean([s["score"] for s in scores.values()])) if scores else float("nan")


@torch.no_grad()
def evaluate(model, dataset, batch_size: int = 8, device: str = "cpu") -> dict:
    """Score `model` on every trajectory of `dataset`; returns per-feature scores and the micro-F1."""
    from torch.utils.data import DataLoader

    t0 = time.time()
    scorer = Scorer(model.spec)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=Collate(model.spec))
    n = 0
    for batch in loader:
        batch: Batch = batch.to(device)
        scorer.add(model.predict(batch), batch.outputs, batch.node_mask)
        n += batch.size
    s = scorer.scores()
    return {"micro_f1": micro_f1(s), "per_feature": s, "trajectories": n, "seconds": round(time.time() - t0, 2)}


def evaluate_checkpoint(p: ClrsEvalParams, out: str | Path | None = None) -> dict:
    """Evaluate a saved model on a `clrs` job's split (`p.data` = its directory) or on fresh samples
    (by default the CLRS-30 test split: the benchmark's inputs, length 64, its count for the algorithm)."""
    from generators.clrs import benchmark_split

    model, meta = load_model(p.model)
    algorithm = meta["algorithm"]
    if p.data:
        ds, source = ShardDataset(p.data, algorithm, p.split), str(p.data)
    else:
        count = p.count or benchmark_split(algorithm, p.split)[0]
        ds = SamplerDataset(algorithm, count, p.nodes, seed=p.seed, variant=p.variant, inputs=p.inputs)
        source = f"sampler length={p.nodes} count={count} variant={p.variant} inputs={p.inputs} seed={p.seed}"
    res = evaluate(model, ds, batch_size=p.batch_size) | {"algorithm": algorithm, "split": p.split, "source": source}
    if out:
        Path(out).write_text(json.dumps(res, indent=1))
    return res
