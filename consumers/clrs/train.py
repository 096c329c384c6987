"""Single-task training of the CLRS encode-process-decode model: Adam, gradient clipping, hint
supervision, model selection on the validation split (in distribution), then an OOD test on the
CLRS-30 test split. `run(ClrsParams, out)` is the entry point of `synth2 clrs train` and of the
consumer run; the model is saved with `consumers.clrs.checkpoint`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from consumers.clrs.checkpoint import save_model
from consumers.clrs.data import Collate, SamplerDataset, ShardDataset
from consumers.clrs.evaluate import evaluate
from consumers.clrs.model import EPD, ModelConfig, categories_of, num_parameters
from consumers.clrs.params import ClrsParams

log = logging.getLogger("synth2.clrs")


def build_model(spec: dict, example: dict, config: ModelConfig | None = None) -> EPD:
    return EPD(spec, config or ModelConfig(), categories_of(spec, example))


class SizeBuckets(Sampler[list[int]]):
    """Batches of one node count each (as the CLRS reference trainer draws them): every epoch shuffles the
    trajectories of each size, cuts them into batches and shuffles the batch order. Padding to the largest
    graph of a mixed batch is what makes a step cost; a batch of 4-node graphs costs a fraction of a 16-node one."""

    def __init__(self, sizes: list[int], batch_size: int, generator: torch.Generator) -> None:
        self.groups: dict[int, list[int]] = {}
        for i, n in enumerate(sizes):
            self.groups.setdefault(int(n), []).append(i)
        self.batch_size, self.gen = batch_size, generator

    def _batches(self) -> list[list[int]]:
        out = []
        for idx in self.groups.values():
            perm = [idx[j] for j in torch.randperm(len(idx), generator=self.gen).tolist()]
            out += [perm[k:k + self.batch_size] for k in range(0, len(perm), self.batch_size)]
        return [out[j] for j in torch.randperm(len(out), generator=self.gen).tolist()]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        return sum(math.ceil(len(g) / self.batch_size) for g in self.groups.values())


def train(algorithm: str, train_ds: Dataset, val_ds: Dataset | None, *, config: ModelConfig | None = None,
          steps: int = 1000, batch_size: int = 32, lr: float = 1e-3, grad_clip: float = 1.0, seed: int = 0,
          eval_every: int = 100, max_seconds: float | None = None, batching: str = "by_size",
          progress: Callable[[int, int, dict], None] | None = None) -> tuple[EPD, dict]:
    """Train on `train_ds` for `steps` batches (or until `max_seconds`); keep the weights with the best
    validation micro-F1. `batching`: "mixed" (uniform batches, padded to the largest graph) or "by_size"
    (each batch one node count, `SizeBuckets`). Returns the model and a history dict."""
    if batching not in ("mixed", "by_size"):
        raise ValueError(f"batching must be 'mixed' or 'by_size', not {batching!r}")
    torch.manual_seed(seed)
    spec = train_ds.spec
    model = build_model(spec, train_ds[0], config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    if batching == "by_size":
        sizes = [int(train_ds[i]["n"]) for i in range(len(train_ds))]
        loader = DataLoader(train_ds, batch_sampler=SizeBuckets(sizes, batch_size, gen), collate_fn=Collate(spec))
    else:
        loader = DataLoader(train_ds, batch_size=batch_size, shuffle=True, collate_fn=Collate(spec), generator=gen,
                            drop_last=len(train_ds) > batch_size)
    hist: dict = {"loss": [], "val": [], "steps": 0}
    best, best_state = -math.inf, None
    t0 = time.time()
    it = iter(loader)
    model.train()
    for step in range(1, steps + 1):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        loss, parts = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        hist["loss"].append(round(float(loss.detach()), 5))
        hist["steps"] = step
        out_of_time = max_seconds is not None and time.time() - t0 > max_seconds
        if val_ds is not None and (step % eval_every == 0 or step == steps or out_of_time):
            v = evaluate(model, val_ds, batch_size=batch_size)
            hist["val"].append({"step": step, "micro_f1": v["micro_f1"], "seconds": round(time.time() - t0, 1)})
            if v["micro_f1"] > best:
                best, best_state = v["micro_f1"], copy.deepcopy(model.state_dict())
            model.train()
            log.info("%s step %d loss %.4f val %.4f", algorithm, step, hist["loss"][-1], v["micro_f1"])
        if progress:
            progress(step, steps, {"loss": hist["loss"][-1]})
        if out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    hist |= {"best_val_micro_f1": None if best_state is None else best, "train_seconds": round(time.time() - t0, 2),
             "parameters": num_parameters(model), "batch_size": batch_size, "lr": lr, "seed": seed, "batching": batching}
    model.eval()
    return model, hist


def datasets(p: ClrsParams) -> tuple[Dataset, Dataset, Dataset]:
    """(train, val, test) of one algorithm: the splits of a `clrs` job directory, or fresh samples —
    train and val with the reference training script's lengths and inputs, test the CLRS-30 test split."""
    from generators.clrs import benchmark_split

    if p.data:
        return tuple(ShardDataset(p.data, p.algorithm, s) for s in ("train", "val", "test"))
    lengths = p.train_lengths()
    test_count = p.test_count or benchmark_split(p.algorithm, "test")[0]
    return (SamplerDataset(p.algorithm, p.train_count, lengths, seed=p.seed, variant=p.variant, inputs=p.train_inputs),
            SamplerDataset(p.algorithm, p.val_count, [max(lengths)], seed=p.seed + 1, variant=p.variant,
                           inputs=p.train_inputs),
            SamplerDataset(p.algorithm, test_count, p.test_nodes, seed=p.seed + 2, variant=p.variant, inputs="benchmark"))


def run(p: ClrsParams, out: str | Path, *, threads: int | None = None,
        progress: Callable[[int, int, dict], None] | None = None) -> dict:
    """Train on one algorithm, pick the best validation checkpoint, test OOD; save model + results.json."""
    if threads:
        torch.set_num_threads(threads)
    tr, va, te = datasets(p)
    cfg = ModelConfig(processor=p.processor, hidden=p.hidden, teacher_forcing=p.teacher_forcing)
    model, hist = train(p.algorithm, tr, va, config=cfg, steps=p.steps, batch_size=p.batch_size, lr=p.lr, seed=p.seed,
                        eval_every=p.eval_every, max_seconds=p.max_seconds, batching=p.batching, progress=progress)
    test = evaluate(model, te, batch_size=p.test_batch_size)
    result = {"algorithm": p.algorithm, "processor": p.processor, "hidden": p.hidden, "steps": hist["steps"],
              "test_micro_f1": test["micro_f1"], "test": test, "history": hist,
              "train_nodes": sorted({int(x["n"]) for x in (tr[i] for i in range(len(tr)))}),
              "test_nodes": sorted({int(x["n"]) for x in (te[i] for i in range(len(te)))}),
              "data": str(p.data) if p.data else "samplers", "params": p.model_dump(mode="json")}
    save_model(model, out, p.algorithm, {"training": {k: v for k, v in result.items() if k not in ("history", "test")}})
    (Path(out) / "results.json").write_text(json.dumps(result, indent=1))
    return result
