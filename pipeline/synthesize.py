"""The `synthesize` job kind: caption → score → select (dedup, balance) → synthesize → shard.

Job directory (`output.dir`):
  job.json                   the spec, its hash, the job id and its layout (caption chunk size)
  progress.json              per-stage counts and rates (the service reads it)
  stages/captions-K.npz      caption chunk K, written by a worker: index, caption, drop reason, text embedding
  stages/selection-K.npz     which of chunk K's captions survived dedup and balancing, with their scores
  stages/selection.json      the selection's small summary: kept rows per chunk, counts; written last
  {name}-000000.tar ...      shards, written by workers; manifest.json lists the finished ones
  stats.json                 counts before/after each step, and the report's metrics

The driver schedules and commits: it hands out chunk and shard ids and records what comes back
(names, counts, sha256). A re-run with the same spec skips finished chunks, a finished selection
and finished shards, and writes exactly the bytes an uninterrupted run writes.
"""

from __future__ import annotations

import logging
import os
from collections import Counter

from pipeline.executors import Step
from pipeline.job import JobContext, key_job_id, write_shards
from pipeline.prompts import RequestPlan
from pipeline.tasks import CaptionChunks, ScoreChunks, SynthesizeShards, caption_chunk_name, cleaning_counts

log = logging.getLogger(__name__)

CHUNK_TARGET = 1024  # caption requests per chunk, rounded up to a multiple of captions.batch_size


def chunk_rows(spec) -> int:
    """Requests per caption chunk: a multiple of the model batch, so that the chunk size (a work
    unit, kept in job.json for resumes) never changes which requests share a model batch."""
    b = spec.captions.batch_size
    target = int(os.environ.get("SYNTH2_CHUNK_TARGET", CHUNK_TARGET))
    return b * max(1, -(-target // b))


def job_layout(spec) -> dict:
    return {"chunk_rows": chunk_rows(spec)}


def worker_spec(spec) -> dict:
    """The spec as workers get it: local model paths made absolute (workers may run elsewhere)."""
    from pipeline.paths import resolve_model_paths

    return resolve_model_paths(spec).model_dump(mode="json")


def steps(ctx: JobContext) -> list[list]:
    """The steps of each phase (for the resource check before anything starts)."""
    spec, res = ctx.spec, ctx.spec.resources
    ws, rows, url = worker_spec(spec), ctx.layout["chunk_rows"], ctx.store.url
    caption = Step.of("caption", CaptionChunks, {"spec": ws, "chunk_rows": rows}, res.caption)
    score = Step.of("score", ScoreChunks, {"spec": ws, "chunk_rows": rows, "store": url}, res.score)
    synth = Step.of("synthesize", SynthesizeShards, {"spec": ws, "store": url, "kept": [], "job_id": ctx.job_id,
                                                     "key_id": ctx.layout.get("key_id") or key_job_id(spec),
                                                     "generator": sample_generator(ctx)}, res.synthesize)
    return [[caption, score], [synth]]


def sample_generator(ctx: JobContext) -> dict | None:
    """Each sample's `generator` metadata: its models as the spec names them (not as this machine's absolute
    paths) and the sha256 of their files, so a sample says what made it and its bytes do not depend on where
    the checkout lies. None for a job begun before (it keeps writing what its first shards have)."""
    if "key_id" not in ctx.layout:
        return None
    from pipeline.model_refs import describe_models
    from pipeline.tasks import generator_meta

    digests = {d["field"]: d["sha256"] for d in describe_models(ctx.spec) if "sha256" in d}
    return generator_meta(ctx.spec) | ({"sha256": digests} if digests else {})


def run(ctx: JobContext) -> dict:
    caption_score, (synth,) = steps(ctx)
    ctx.executor.check([caption_score, [synth]])
    n_chunks = run_captions(ctx, caption_score)
    sel = run_selection(ctx, n_chunks)
    synth = Step(synth.stage, synth.cls, synth.kwargs | {"kept": sel["kept"]}, synth.num_cpus, synth.num_gpus,
                 synth.concurrency)
    manifest = write_shards(ctx, sum(sel["kept"]), synth, ("synthesize", "shard"))
    cleaning = ctx.executor.call(cleaning_counts, ctx.store.url, n_chunks)
    stats = {**sel["stats"], "cleaning": cleaning, "samples": manifest.samples, "shards": len(manifest.shards)}
    stats = ctx.finish(stats)
    stats["prior_alignment_mean"] = stats.get("metrics", {}).get("selected", {}).get("prior_alignment_mean")
    ctx.store.write_json(stats, "stats.json")
    return stats


def run_captions(ctx: JobContext, caption_score: list[Step]) -> int:
    """Caption and embed every request, chunk by chunk, on workers; finished chunks are kept
    across runs. Returns the number of chunks."""
    n = len(RequestPlan(ctx.spec))
    rows = ctx.layout["chunk_rows"]
    n_chunks = (n + rows - 1) // rows
    pending = [k for k in range(n_chunks) if not ctx.store.exists(caption_chunk_name(k))]
    done = n - sum(min(rows, n - k * rows) for k in pending)
    for stage in ("caption", "score"):  # one stream: each chunk is captioned, then embedded
        ctx.progress.update(stage, done=done, total=n, status="RUNNING")
    for row in ctx.executor.run([{"chunk": k} for k in pending], caption_score):
        done += int(row["rows"])
        for stage in ("caption", "score"):
            ctx.progress.update(stage, done=done)
    for stage in ("caption", "score"):
        ctx.progress.update(stage, done=n, status="SUCCEEDED", force=True)
    return n_chunks


def run_selection(ctx: JobContext, n_chunks: int) -> dict:
    """Dedup and balancing over the whole job (on a worker): `stages/selection-K.npz` per chunk,
    then `stages/selection.json` ({"kept": rows kept per chunk, "stats": counts}) last."""
    from pipeline.select_step import select

    path = "stages/selection.json"
    if ctx.store.exists(path):
        sel = ctx.store.read_json(path)
        ctx.progress.update("select", done=sel["stats"]["requested"], total=sel["stats"]["requested"],
                            status="SUCCEEDED", kept=sel["stats"]["after_balance"])
        return sel
    ctx.progress.update("select", total=len(RequestPlan(ctx.spec)), status="RUNNING", force=True)
    sel = select(ctx, n_chunks)
    ctx.store.write_json(sel, path)
    ctx.progress.update("select", done=sel["stats"]["requested"], status="SUCCEEDED",
                        kept=sel["stats"]["after_balance"], force=True)
    return sel


def count_concepts(rows) -> dict:
    return dict(Counter(c for cs in rows for c in set(cs)))
