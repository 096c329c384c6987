"""Run a job: caption → score → select (dedup, balance) → synthesize → shard, resumably.

Job directory (`output.dir`):
  job.json          the spec, its hash and the job id
  progress.json     per-stage counts and rates (the service reads it)
  stages/captions-*.npz   finished caption chunks (caption, drop reason, text embedding)
  stages/selection.npz    which captions survived dedup and balancing, with their scores
  {name}-000000.tar ...   shards; manifest.json lists the finished ones
  stats.json        counts before/after each step

A re-run with the same spec skips finished chunks, the finished selection and finished shards,
and produces exactly the samples an uninterrupted run would have.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.prompts import build_requests, derive_seed
from pipeline.shards import MANIFEST, ShardWriter, make_sample, sample_key
from pipeline.spec import JobSpec, spec_hash
from pipeline.storage import Store

log = logging.getLogger(__name__)

CHUNK = 1024  # caption requests per persisted chunk


class JobConflict(RuntimeError):
    """The output directory holds something other than this job's output."""


# ---------------------------------------------------------------- progress


@dataclass
class Progress:
    store: Store
    job_id: str
    stages: dict[str, dict] = field(default_factory=dict)
    status: str = "RUNNING"
    error: str | None = None
    _last: float = 0.0

    def update(self, stage: str, done: int | None = None, total: int | None = None, status: str | None = None,
               force: bool = False, **extra) -> None:
        s = self.stages.setdefault(stage, {"done": 0, "total": None, "status": "PENDING", "started_at": None})
        now = time.time()
        if s["started_at"] is None and (status == "RUNNING" or done):
            s["started_at"] = now
        if done is not None:
            s["done"] = int(done)
        if total is not None:
            s["total"] = int(total)
        if status:
            s["status"] = status
        s.update(extra)
        if s["started_at"] and s["done"] and now - s["started_at"] >= 0.5:  # no rate from a resumed instant
            s["rate_per_s"] = round(s["done"] / max(now - s["started_at"], 1e-6), 2)
        if force or status or now - self._last > 1.0:
            self.save()

    def save(self) -> None:
        self._last = time.time()
        data = {"job_id": self.job_id, "status": self.status, "error": self.error, "updated_at": self._last,
                "stages": self.stages}
        self.store.write_json(data, "progress.json")


# ---------------------------------------------------------------- executors


StageSpec = tuple[type, dict, object]  # (stage class, constructor kwargs, StageResources)


class LocalExecutor:
    """Every stage in this process, one batch after another: the plain-loop baseline."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._cache: dict[tuple, object] = {}
        self.seconds: dict[str, float] = {}  # time spent in each stage's __call__

    def map(self, rows: list[dict], stages: list[StageSpec], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        instances = []
        for cls, kwargs, _ in stages:
            key = (cls.__name__, json.dumps(kwargs, sort_keys=True, default=str))
            if key not in self._cache:
                self._cache[key] = cls(**kwargs, threads=self.threads)
            instances.append(self._cache[key])
        for i in range(0, len(rows), batch_size):
            batch = {k: np.array([r[k] for r in rows[i:i + batch_size]], dtype=object if isinstance(rows[i][k], str)
                                 else None) for k in rows[i]}
            for stage in instances:
                t = time.perf_counter()
                batch = stage(batch)
                name = type(stage).__name__
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t
            yield batch


class RayExecutor:
    """Each stage a Ray Data actor pool (`map_batches` with a class), streaming between them."""

    def __init__(self) -> None:
        import ray

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = True

    def map(self, rows: list[dict], stages: list[StageSpec], batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        import ray

        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // batch_size, 200)))
        for cls, kwargs, res in stages:
            ds = ds.map_batches(cls, fn_constructor_kwargs={**kwargs, "threads": max(1, int(res.num_cpus))},
                                batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=res.concurrency),
                                num_cpus=res.num_cpus,
                                num_gpus=res.num_gpus or None, batch_format="numpy")
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")


# ---------------------------------------------------------------- job


def in_order(batches: Iterable[dict[str, np.ndarray]], position: Callable[[int], int], start: int,
             fields: tuple[str, ...]) -> Iterator[tuple]:
    """(position, row index, *fields) for every row, in position order from `start`, however the
    batches arrive: shards are written in index order, so a resumed job continues exactly."""
    pending: dict[int, tuple] = {}
    nxt = start
    for batch in batches:
        for row in zip(batch["index"], *(batch[f] for f in fields)):
            pending[position(int(row[0]))] = (int(row[0]), *row[1:])
        while nxt in pending:
            yield (nxt, *pending.pop(nxt))
            nxt += 1


def job_id_for(spec: JobSpec) -> str:
    return f"{spec.name}-{spec_hash(spec)[:12]}"


def key_job_id(spec: JobSpec) -> str:
    """The id sample keys derive from: the job id of the same spec in embedding space, so that a
    spec's embedding and pixel runs write the same keys for the same captions."""
    if spec.synthesis is None or spec.synthesis.space == "embedding":
        return job_id_for(spec)
    return job_id_for(spec.model_copy(update={"synthesis": spec.synthesis.model_copy(update={"space": "embedding"})}))


def prepare_dir(spec: JobSpec, force: bool) -> Store:
    """Create or reopen the job directory; refuse one that holds another job (unless `force`)."""
    out = Store(spec.output.dir)
    where = spec.output.dir
    if out.is_file():
        raise JobConflict(f"output.dir {where!r} exists and is a file, not a directory")
    h = spec_hash(spec)
    if out.exists("job.json"):
        old = out.read_json("job.json")
        if old.get("spec_hash") != h:
            if not force:
                raise JobConflict(
                    f"output.dir {where!r} holds job {old.get('job_id')!r} made from a different spec "
                    f"(spec hash {old.get('spec_hash', '?')[:12]} vs {h[:12]}); use another output.dir, "
                    f"or --force to delete its output and start again")
            log.warning("--force: deleting the output of job %s in %s", old.get("job_id"), where)
            for name in ["stages", MANIFEST, "stats.json", "progress.json", *out.glob("*.tar")]:
                out.remove(name)
    elif out.glob("*.tar"):
        raise JobConflict(f"output.dir {where!r} already holds shards that no synth2 job wrote; pick another")
    out.makedirs("stages")
    out.write_json({"job_id": job_id_for(spec), "spec_hash": h, "spec": spec.model_dump(mode="json")}, "job.json")
    return out


def run_captions(spec: JobSpec, out: Store, executor, progress: Progress) -> dict[str, np.ndarray]:
    """Caption and embed every request, chunk by chunk; finished chunks are kept across runs."""
    requests = build_requests(spec)
    n_chunks = (len(requests) + CHUNK - 1) // CHUNK
    chunk_name = lambda k: f"stages/captions-{k:05d}.npz"  # noqa: E731
    pending = [k for k in range(n_chunks) if not out.exists(chunk_name(k))]
    done_before = (n_chunks - len(pending)) * CHUNK
    for stage in ("caption", "score"):  # one stream: every row is captioned, then embedded
        progress.update(stage, done=min(done_before, len(requests)), total=len(requests), status="RUNNING")
    rows = [{"index": r.index, "prompt": r.prompt, "seed": r.seed}
            for k in pending for r in requests[k * CHUNK:(k + 1) * CHUNK]]
    if rows:
        stages = [(_stage("CaptionStage"), {"captions": stage_config(spec, "captions")}, spec.resources.caption),
                  (_stage("ScoreStage"), {"encoder": stage_config(spec, "synthesis")["encoder"]}, spec.resources.score)]
        buf: dict[int, tuple] = {}
        missing = {k: len(range(k * CHUNK, min((k + 1) * CHUNK, len(requests)))) for k in pending}
        received = done_before
        for batch in executor.map(rows, stages, spec.captions.batch_size):
            for i, cap, drop, emb in zip(batch["index"], batch["caption"], batch["drop"], batch["text_emb"]):
                buf[int(i)] = (str(cap), str(drop), emb)
                k = int(i) // CHUNK
                missing[k] -= 1
                if missing[k] == 0:  # the chunk is whole: persist it and free its rows
                    idx = list(range(k * CHUNK, min((k + 1) * CHUNK, len(requests))))
                    out.save_npz(chunk_name(k), index=np.array(idx), caption=np.array([buf[j][0] for j in idx]),
                                 drop=np.array([buf[j][1] for j in idx]), text_emb=np.stack([buf.pop(j)[2] for j in idx]))
            received += len(batch["index"])
            for stage in ("caption", "score"):
                progress.update(stage, done=min(received, len(requests)))
    for stage in ("caption", "score"):
        progress.update(stage, done=len(requests), status="SUCCEEDED", force=True)
    parts = [out.load_npz(chunk_name(k)) for k in range(n_chunks)]
    data = {key: np.concatenate([p[key] for p in parts]) for key in ("index", "caption", "drop", "text_emb")}
    data["prompt_concepts"] = np.array([list(r.concepts) for r in requests], dtype=object)
    return data


def local_path(ref: str) -> str:
    """A model reference as workers must see it: a relative path that exists here becomes
    absolute (Ray workers may run elsewhere); hub ids and URLs pass through."""
    prefix = "local-dir:" if ref.startswith("local-dir:") else ""
    path = Path(ref[len(prefix):])
    return prefix + str(path.resolve()) if not path.is_absolute() and path.exists() else ref


def stage_config(spec: JobSpec, section: str) -> dict:
    """A spec section as a stage's constructor argument, with local model paths made absolute."""
    d = getattr(spec, section).model_dump(mode="json")
    if section == "captions" and d["backend"] == "hf":
        d["model"] = local_path(d["model"])
    if section == "synthesis":
        d["prior"] = local_path(d["prior"])
        if d.get("decoder"):
            d["decoder"] = local_path(d["decoder"])
    if "encoder" in d:
        d["encoder"]["name"] = local_path(d["encoder"]["name"])
    return d


def _stage(name: str) -> type:
    from pipeline import stages

    return getattr(stages, name)


def run_selection(spec: JobSpec, out: Store, cap: dict[str, np.ndarray], progress: Progress) -> dict:
    from collections import Counter

    from pipeline.selection import balance, dedup, match_concepts

    path = "stages/selection.npz"
    if out.exists(path):
        sel = out.load_npz(path)
        progress.update("select", done=len(sel["keep"]), total=len(sel["keep"]), status="SUCCEEDED")
        return sel | {"stats": json.loads(str(sel["stats"]))}
    progress.update("select", total=len(cap["index"]), status="RUNNING")
    valid = cap["drop"] == ""
    drops = Counter(str(d) for d in cap["drop"] if d)
    v_idx = np.nonzero(valid)[0]
    keep_d, nearest, dup_reasons = dedup([str(t) for t in cap["caption"][v_idx]], cap["text_emb"][v_idx],
                                         spec.scoring.near_dup_threshold, spec.scoring.exact_dedup)
    bank = spec.concepts.items
    matched = [match_concepts(str(cap["caption"][i]), bank) for i in v_idx]
    d_idx = v_idx[keep_d]
    d_concepts = [matched[j] or list(cap["prompt_concepts"][i]) for j, i in zip(np.nonzero(keep_d)[0], d_idx, strict=False)]
    b = spec.scoring.balance
    keep_b = balance(d_concepts, [int(i) for i in d_idx], b.method, b.cap, b.target, spec.captions.sampling.seed)
    final = d_idx[keep_b]
    count = lambda rows: dict(Counter(c for cs in rows for c in set(cs)))  # noqa: E731
    stats = {"requested": int(len(cap["index"])), "dropped": dict(drops), "valid": int(valid.sum()),
             "duplicates_removed": dict(dup_reasons), "after_dedup": int(len(d_idx)),
             "after_balance": int(len(final)), "balance_method": b.method,
             "concept_counts_before_balance": count(d_concepts),
             "concept_counts_after_balance": count([c for c, k in zip(d_concepts, keep_b, strict=False) if k])}
    kept = np.nonzero(keep_d)[0][keep_b]  # positions among the valid captions
    sel = {"keep": final, "matched": np.array([json.dumps(matched[j]) for j in kept]),
           "nearest": nearest[kept].astype(np.float32)}
    out.save_npz(path, **sel, stats=np.array(json.dumps(stats)))
    progress.update("select", done=len(cap["index"]), status="SUCCEEDED", kept=len(final))
    return sel | {"stats": stats}


def run_synthesis(spec: JobSpec, out: Store, cap: dict, sel: dict, executor, progress: Progress) -> dict:
    keep = [int(i) for i in sel["keep"]]
    writer = ShardWriter(out.url, spec.output.name, spec.output.shard_size, spec.model_dump(mode="json"), spec_hash(spec))
    start = writer.start_index
    progress.update("synthesize", done=start, total=len(keep), status="RUNNING")
    progress.update("shard", done=start, total=len(keep), status="RUNNING", shards=len(writer.manifest.shards))
    if writer.complete:
        progress.update("synthesize", status="SUCCEEDED")
        progress.update("shard", status="SUCCEEDED")
        return writer.manifest.to_dict()
    pos = {i: k for k, i in enumerate(keep)}
    job_id, key_id = job_id_for(spec), key_job_id(spec)
    syn = spec.synthesis
    pixel = syn.space == "pixel"
    generator = {"captions": {"backend": spec.captions.backend, "model": spec.captions.model},
                 "prior": syn.prior, "encoder": syn.encoder.model_dump(), "scheduler": syn.scheduler,
                 "steps": syn.steps, "guidance_scale": syn.guidance_scale}
    if pixel:
        generator |= {"space": "pixel", "decoder": syn.decoder, "decoder_steps": syn.decoder_steps,
                      "decoder_guidance_scale": syn.decoder_guidance_scale}
    rows = [{"index": i, "caption": str(cap["caption"][i])} for i in keep[start:]]
    alignments = []
    stage = "PixelSynthesizeStage" if pixel else "SynthesizeStage"
    stages = [(_stage(stage), {"synthesis": stage_config(spec, "synthesis")}, spec.resources.synthesize)]
    batches = executor.map(rows, stages, syn.batch_size) if rows else []
    fields = ("emb", "alignment", "png", "prior_cosine") if pixel else ("emb", "alignment")
    for k, i, emb, a, *extra in in_order(batches, pos.__getitem__, start, fields):
        alignments.append(float(a))
        meta = {"source": "synthetic", "job_id": job_id, "index": i,
                "prompt_concepts": list(cap["prompt_concepts"][i]),
                "concepts": json.loads(str(sel["matched"][k])), "seed": derive_seed("prior", syn.seed, i),
                "generator": generator,
                "scores": {"prior_alignment": round(float(a), 5), "nearest_kept_cosine": round(float(sel["nearest"][k]), 5)}}
        if pixel:
            meta["decoder_seed"] = derive_seed("decoder", syn.seed, i)
            if np.isfinite(extra[1]):  # cosine of the decoded image's embedding to the prior's
                meta["scores"]["prior_cosine"] = round(float(extra[1]), 5)
        png = bytes(extra[0]) if pixel else None
        writer.write(make_sample(sample_key(key_id, i), str(cap["caption"][i]), emb, meta, png=png))
        progress.update("synthesize", done=k + 1)
        progress.update("shard", done=writer.manifest.samples, shards=len(writer.manifest.shards))
    manifest = writer.close()
    progress.update("synthesize", done=len(keep), status="SUCCEEDED")
    progress.update("shard", done=manifest.samples, status="SUCCEEDED", shards=len(manifest.shards), force=True)
    return manifest.to_dict() | {"alignment_mean": float(np.mean(alignments)) if alignments else None}


def run_job(spec: JobSpec, *, force: bool = False, executor=None) -> dict:
    """Run (or resume) a `synthesize` job; returns its stats."""
    if spec.kind == "clrs":
        from pipeline.clrs import run_clrs_job

        return run_clrs_job(spec, force=force, executor=executor)
    if spec.kind != "synthesize":
        from pipeline.embed import run_embed_job

        return run_embed_job(spec, force=force, executor=executor)
    t0 = time.time()
    out = prepare_dir(spec, force)
    progress = Progress(out, job_id_for(spec))
    executor = executor or RayExecutor()
    try:
        cap = run_captions(spec, out, executor, progress)
        sel = run_selection(spec, out, cap, progress)
        manifest = run_synthesis(spec, out, cap, sel, executor, progress)
    except BaseException as e:
        progress.status, progress.error = ("STOPPED" if isinstance(e, KeyboardInterrupt) else "FAILED"), str(e)
        progress.save()
        raise
    stats = {"job_id": job_id_for(spec), "spec_hash": spec_hash(spec), **sel["stats"],
             "samples": manifest["samples"], "shards": len(manifest["shards"]),
             "prior_alignment_mean": manifest.get("alignment_mean"), "seconds": round(time.time() - t0, 2)}
    out.write_json(stats, "stats.json")
    stats = write_metrics_and_report(out, stats)
    progress.status = "SUCCEEDED"
    progress.save()
    return stats


def write_metrics_and_report(out: Store, stats: dict) -> dict:
    """Caption diversity and balance metrics into stats.json, and report.json + report.html."""
    from pipeline.report import write_report

    t = time.time()
    report = write_report(out.url)
    stats = stats | {"metrics": report["metrics"], "report_seconds": round(time.time() - t, 2)}
    out.write_json(stats, "stats.json")
    return stats
