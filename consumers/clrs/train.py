"""Single-task training of the CLRS encode-process-decode model: Adam, gradient clipping, hint
supervision, model selection on the validation split (in distribution), then an OOD test.

A model is saved as `config.json` (spec, model config, algorithm, training figures) + `model.pt`
(PyTorch state dict) in one directory, and loaded back with `load_model`.
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

from consumers.clrs.data import Collate
from consumers.clrs.evaluate import evaluate
from consumers.clrs.model import EPD, ModelConfig, categories_of, num_parameters

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
          eval_every: int = 100, max_seconds: float | None = None, batching: str = "mixed",
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


def save_model(model: EPD, directory: str | Path, algorithm: str, extra: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), d / "model.pt")
    (d / "config.json").write_text(json.dumps({"algorithm": algorithm, **model.config_dict(), **(extra or {})}, indent=1))
    return d


def load_model(directory: str | Path) -> tuple[EPD, dict]:
    d = Path(directory)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d} has no config.json: not a CLRS model directory")
    meta = json.loads((d / "config.json").read_text())
    spec = {k: tuple(v) for k, v in meta["spec"].items()}
    model = EPD(spec, ModelConfig(**meta["model"]), meta.get("categories") or {})
    model.load_state_dict(torch.load(d / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    return model, meta


def datasets(algorithm: str, data: str | None, *, train_count: int = 1000, train_nodes: list[int] | None = None,
             val_count: int = 32, val_nodes: list[int] | None = None, test_count: int = 32, test_nodes: list[int] | None = None,
             seed: int = 0):
    """(train, val, test) of one algorithm: the splits of a `clrs` job directory, or fresh samples."""
    from consumers.clrs.data import SamplerDataset, ShardDataset

    if data:
        return tuple(ShardDataset(data, algorithm, s) for s in ("train", "val", "test"))
    return (SamplerDataset(algorithm, train_count, train_nodes or [16], seed=seed),
            SamplerDataset(algorithm, val_count, val_nodes or [16], seed=seed + 1),
            SamplerDataset(algorithm, test_count, test_nodes or [64], seed=seed + 2))


def run(algorithm: str, out: str | Path, *, data: str | None = None, processor: str = "triplet_gmpnn", hidden: int = 128,
        steps: int = 1000, batch_size: int = 32, lr: float = 1e-3, teacher_forcing: float = 0.0, seed: int = 0,
        eval_every: int = 100, max_seconds: float | None = None, test_batch_size: int = 4, threads: int | None = None,
        batching: str = "mixed", progress: Callable[[int, int, dict], None] | None = None, **split_kw) -> dict:
    """Train on one algorithm, pick the best validation checkpoint, test OOD; save model + results.json."""
    if threads:
        torch.set_num_threads(threads)
    tr, va, te = datasets(algorithm, data, seed=seed, **split_kw)
    cfg = ModelConfig(processor=processor, hidden=hidden, teacher_forcing=teacher_forcing)
    model, hist = train(algorithm, tr, va, config=cfg, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                        eval_every=eval_every, max_seconds=max_seconds, batching=batching, progress=progress)
    test = evaluate(model, te, batch_size=test_batch_size)
    result = {"algorithm": algorithm, "processor": processor, "hidden": hidden, "steps": hist["steps"],
              "test_micro_f1": test["micro_f1"], "test": test, "history": hist,
              "train_nodes": sorted({int(x["n"]) for x in (tr[i] for i in range(len(tr)))}),
              "test_nodes": sorted({int(x["n"]) for x in (te[i] for i in range(len(te)))}),
              "data": str(data) if data else "samplers"}
    save_model(model, out, algorithm, {"training": {k: v for k, v in result.items() if k not in ("history", "test")}})
    (Path(out) / "results.json").write_text(json.dumps(result, indent=1))
    return result
