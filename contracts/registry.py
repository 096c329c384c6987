"""The consumers a job can run: name → (params model, entry point).

A consumer run is a job of kind `consumer` (`pipeline/spec.py`): `consumer: {name, params}`. The spec
validates `params` with the consumer's pydantic model, `pipeline/run.py` calls `run_consumer`, and the
service (`/v1/consumers/{name}/runs`) runs it like any job and serves the files it writes.

Registering one (see consumers/README.md):

    class Params(ConsumerParams):             # strict: unknown keys are errors; bounds on every field
        model: str = Field(min_length=1, max_length=500)

    def run(params: Params, out_dir: Path, progress: Progress) -> dict:
        ...                                   # write JSON + PNGs into out_dir, call progress(done, total, step)
        return {"headline": 1.0}              # the summary the service shows

    register("mine", Params, run, "What it measures.")   # run may also be "module:function"

and add the module to `BUILTIN` below. Keep that module light at import time (import torch inside
`run`): the service imports it to validate requests.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import posixpath
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from contracts.reads import ReadsFrom, reads  # noqa: F401 -- the path marker; serve/policy.py walks it

log = logging.getLogger("synth2.consumers")

# Modules that call `register` when imported.
BUILTIN = ("consumers.oversquash.job", "vlm.job", "vlm.loop_job", "consumers.clrs.job", "consumers.homomorphism.job",
           "consumers.htm.job", "consumers.coberl.job",
           "consumers.exploration.job")
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"


class ConsumerParams(BaseModel):
    """Base for a consumer's params: unknown keys are rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Progress(Protocol):
    def __call__(self, done: int, total: int | None = None, step: str | None = None) -> None: ...


RunFn = Callable[[Any, Path, Progress], dict]


@dataclass(frozen=True)
class Consumer:
    name: str
    params: type[BaseModel]
    run: RunFn | str  # a callable, or "module:function" imported on first use
    description: str = ""

    def entry(self) -> RunFn:
        if callable(self.run):
            return self.run
        module, _, attr = self.run.partition(":")
        return getattr(importlib.import_module(module), attr)

    def info(self) -> dict:
        return {"name": self.name, "description": self.description, "params_schema": self.params.model_json_schema()}


class UnknownConsumer(KeyError):
    def __init__(self, name: str, known: list[str]) -> None:
        self.name, self.known = name, known
        super().__init__(name)

    def __str__(self) -> str:
        return f"no consumer {self.name!r}; registered: {', '.join(self.known) or '(none)'}"


class OutputConflict(RuntimeError):
    """The output directory holds another run's results."""


_REGISTRY: dict[str, Consumer] = {}
_loaded = False
_lock = threading.Lock()


def register(name: str, params: type[BaseModel], run: RunFn | str, description: str = "") -> Consumer:
    """Add a consumer; registering the same name twice replaces the first."""
    import re

    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"consumer name {name!r} must match {NAME_PATTERN}")
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise TypeError(f"params of consumer {name!r} must be a pydantic model class")
    if params.model_config.get("extra") != "forbid":
        raise TypeError(f"params of consumer {name!r} must reject unknown keys (subclass ConsumerParams)")
    _REGISTRY[name] = c = Consumer(name, params, run, description)
    return c


def _load_builtins() -> None:
    """Import the built-in consumer modules once (the service's request threads may ask at the same time)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if not _loaded:
            for module in BUILTIN:
                importlib.import_module(module)
            _loaded = True


def names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get(name: str) -> Consumer:
    _load_builtins()
    if name not in _REGISTRY:
        raise UnknownConsumer(name, sorted(_REGISTRY))
    return _REGISTRY[name]


def consumers() -> list[Consumer]:
    return [get(n) for n in names()]


# ---------------------------------------------------------------- running one


class _ProgressFile:
    """progress.json in the layout the pipeline writes (one stage, named after the consumer), so the
    service's job views read it unchanged."""

    def __init__(self, store, name: str, spec_hash: str | None) -> None:
        self.store, self.name, self.spec_hash = store, name, spec_hash
        self.stage: dict[str, Any] = {"done": 0, "total": None, "status": "RUNNING", "step": None,
                                      "started_at": time.time()}
        self.status, self.error = "RUNNING", None
        self._last = 0.0

    def __call__(self, done: int, total: int | None = None, step: str | None = None) -> None:
        self.stage["done"] = int(done)
        if total is not None:
            self.stage["total"] = int(total)
        if step is not None:
            self.stage["step"] = str(step)[:200]
        if time.time() - self._last > 0.5 or (total is not None and done >= total):
            self.save()

    def save(self) -> None:
        self._last = time.time()
        self.store.write_json({"job_id": self.spec_hash, "status": self.status, "error": self.error,
                               "updated_at": self._last, "stages": {self.name: self.stage}}, "progress.json")


def run_consumer(name: str, params: dict | BaseModel, out: str, *, spec_hash: str | None = None,
                 force: bool = False) -> dict:
    """Run consumer NAME with PARAMS into OUT (a local directory or fsspec URL); returns its summary,
    also written to OUT/summary.json. Results on object storage are written locally first, then uploaded."""
    from contracts.storage import Store

    consumer = get(name)
    p = params if isinstance(params, consumer.params) else consumer.params.model_validate(params)
    store = Store(out)
    if store.exists("job.json") and not force:
        prev = store.read_json("job.json")
        if prev.get("consumer") != name or (spec_hash and prev.get("spec_hash") not in (None, spec_hash)):
            raise OutputConflict(f"{out} holds the results of another run ({prev.get('consumer')}, spec hash "
                                 f"{str(prev.get('spec_hash'))[:12]}); choose another directory or force")
    store.makedirs()
    store.remove("summary.json")  # an earlier run's, until this one finishes
    store.write_json({"consumer": name, "params": p.model_dump(mode="json"), "spec_hash": spec_hash}, "job.json")
    progress = _ProgressFile(store, name, spec_hash)
    progress.save()
    t0 = time.time()
    work = Path(store.root) if store.local else Path(tempfile.mkdtemp(prefix=f"synth2-{name}-"))
    try:
        summary = consumer.entry()(p, work, progress)
        if not store.local:
            for f in sorted(work.rglob("*")):
                if f.is_file():
                    store.write_bytes(f.read_bytes(), *f.relative_to(work).parts)
    except BaseException as e:
        progress.status = "STOPPED" if isinstance(e, KeyboardInterrupt) else "FAILED"
        progress.stage["status"], progress.error = progress.status, str(e)
        progress.save()
        raise
    finally:
        if not store.local:
            shutil.rmtree(work, ignore_errors=True)
    skip = {"job.json", "progress.json", "summary.json"}
    files = sorted(f for f in (posixpath.relpath(x, store.root) for x in store.fs.find(store.root))
                   if f not in skip and not f.endswith(".tmp"))
    result = {"consumer": name, "seconds": round(time.time() - t0, 2), "files": files,
              "summary": _finite(json.loads(json.dumps(summary, default=_jsonable)))}
    store.write_json(result, "summary.json")
    progress.status = progress.stage["status"] = "SUCCEEDED"
    progress.stage["done"] = progress.stage["total"] or progress.stage["done"]
    progress.save()
    return result


def _jsonable(x: Any) -> Any:
    if isinstance(x, os.PathLike):
        return os.fspath(x)
    if hasattr(x, "tolist"):  # numpy
        return x.tolist()
    return str(x)


def _finite(x: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x
