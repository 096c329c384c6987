"""Where a job's work runs. An executor maps small work items (a chunk id, a shard id) through a
list of steps — stage classes in Ray Data's shape, each loading its model once — and yields each
item's small result (names, counts, sha256). The data itself goes from the workers to the job's
store; the driver never carries it.

- `LocalExecutor`: every step in this process, one item after another (the plain-loop baseline).
- `RayExecutor`: each step a Ray Data actor pool (`map_batches` over one item per batch), streaming
  from one pool to the next; before it starts, the cluster is checked to have what the spec asks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


class ResourceError(RuntimeError):
    """The spec asks for resources the cluster cannot give."""


@dataclass(frozen=True)
class Step:
    """One stage of the work: `stage` names it in `resources` and errors ("caption", "synthesize")."""

    stage: str
    cls: type
    kwargs: dict
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int = 1

    @classmethod
    def of(cls, stage: str, stage_cls: type, kwargs: dict, res) -> Step:
        """A step with the spec's `resources.<stage>` (a StageResources)."""
        return cls(stage, stage_cls, kwargs, float(res.num_cpus), float(res.num_gpus), int(res.concurrency))


def _batch_of(row: dict) -> dict[str, np.ndarray]:
    return {k: np.array([v], dtype=object if isinstance(v, (str, bytes)) else None) for k, v in row.items()}


def _row_of(batch: dict[str, np.ndarray]) -> dict:
    return {k: (v[0].item() if isinstance(v[0], np.generic) else v[0]) for k, v in batch.items()}


class LocalExecutor:
    """Every step in this process, item after item: the plain-loop baseline, and the tests' executor."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._cache: dict[tuple, object] = {}
        self.seconds: dict[str, float] = {}  # time spent in each step

    def check(self, groups: list[list[Step]]) -> None:
        import torch

        for group in groups:
            for s in group:
                if s.num_gpus and not torch.cuda.is_available():
                    raise ResourceError(f"resources.{s.stage}.num_gpus is {s.num_gpus:g} but this machine has no "
                                        f"CUDA device; set it to 0 or run on a GPU machine")

    def _instance(self, s: Step):
        key = (s.cls.__module__, s.cls.__name__, json.dumps(s.kwargs, sort_keys=True, default=str), s.num_gpus)
        if key not in self._cache:
            self._cache[key] = s.cls(**s.kwargs, threads=self.threads, num_gpus=s.num_gpus)
        return self._cache[key]

    def run(self, items: list[dict], steps: list[Step]) -> Iterator[dict]:
        if not items:
            return
        self.check([steps])
        instances = [self._instance(s) for s in steps]
        for item in items:
            batch = _batch_of(item)
            for s, inst in zip(steps, instances, strict=True):
                t = time.perf_counter()
                batch = inst(batch)
                self.seconds[s.stage] = self.seconds.get(s.stage, 0.0) + time.perf_counter() - t
            yield _row_of(batch)

    def call(self, fn: Callable, *args, num_cpus: float = 1.0):
        """One function call that moves data (selection, the report): here, in this process."""
        return fn(*args)


def check_resources(groups: list[list[Step]], nodes: list[dict[str, float]]) -> None:
    """Refuse, before anything starts, steps the cluster cannot place: an actor needing more than
    any node has, or steps running together needing more than the cluster has in all (Ray would
    wait for those actors forever). `nodes` holds each alive node's resources ({"CPU": 2, "GPU": 0})."""
    total: dict[str, float] = {}
    for n in nodes:
        for k, v in n.items():
            total[k] = total.get(k, 0.0) + float(v)
    have = f"the cluster has {len(nodes)} node(s) with CPU {total.get('CPU', 0):g}, GPU {total.get('GPU', 0):g} in all"
    for group in groups:
        need = {"CPU": 0.0, "GPU": 0.0}
        for s in group:
            actor = {"CPU": s.num_cpus, "GPU": s.num_gpus}
            for k, v in actor.items():
                if v and not any(float(n.get(k, 0)) >= v for n in nodes):
                    most = max((float(n.get(k, 0)) for n in nodes), default=0)
                    raise ResourceError(f"resources.{s.stage}.num_{k.lower()}s is {v:g} per actor, but no node of "
                                        f"the cluster has that much {k} (the most on one node: {most:g}; {have})")
                need[k] += v * s.concurrency
        for k, v in need.items():
            if v > total.get(k, 0.0) + 1e-9:
                stages = ", ".join(f"resources.{s.stage} ({s.concurrency} x {getattr(s, f'num_{k.lower()}s'):g})"
                                   for s in group)
                raise ResourceError(f"{stages} together need {v:g} {k}, but {have}; lower num_{k.lower()}s or "
                                    f"concurrency, or add nodes")


class RayExecutor:
    """Each step a Ray Data actor pool, streaming between them; one item per batch, so an item's
    model batches are the same as in the local loop (the bytes do not depend on the executor)."""

    distributed = True  # job-wide steps (selection) run as Ray Data group-bys, not in one process

    def __init__(self) -> None:
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = False  # results are small and the driver orders them
        ctx.enable_progress_bars = False

    def check(self, groups: list[list[Step]]) -> None:
        import ray

        nodes = [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]
        check_resources(groups, nodes)

    def run(self, items: list[dict], steps: list[Step]) -> Iterator[dict]:
        import ray

        if not items:
            return
        self.check([steps])
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        for s in steps:
            ds = ds.map_batches(s.cls, fn_constructor_kwargs={**s.kwargs, "threads": max(1, math.floor(s.num_cpus)),
                                                              "num_gpus": s.num_gpus},
                                batch_size=1, compute=ray.data.ActorPoolStrategy(size=s.concurrency),
                                num_cpus=s.num_cpus, num_gpus=s.num_gpus or None, batch_format="numpy")
        for row in ds.iter_rows():
            yield {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}

    def call(self, fn: Callable, *args, num_cpus: float = 1.0):
        """One function call that moves data (selection, the report), as a Ray task on a worker."""
        import ray

        return ray.get(ray.remote(num_cpus=num_cpus, max_retries=0)(fn).remote(*args))
