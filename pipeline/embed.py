"""The `embed` job kind: real image-text WebDataset shards → encoder embeddings → shards in the
same sample contract (`source: real`). This is how a user's real pairs, and the world's
human-annotated split, become VLM training data beside the synthetic ones."""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Iterator

import fsspec

from pipeline.runner import (
    Progress,
    RayExecutor,
    _stage,
    in_order,
    job_id_for,
    prepare_dir,
    stage_config,
    write_metrics_and_report,
)
from pipeline.shards import ShardWriter, make_sample, sample_key
from pipeline.spec import JobSpec, spec_hash


def expand(patterns: list[str]) -> list[str]:
    """Brace-expand shard patterns (`data/train-{000000..000009}.tar`), as WebDataset does."""
    import braceexpand

    return [p for pat in patterns for p in braceexpand.braceexpand(pat)]


def read_pairs(url: str, image_key: str, text_key: str) -> Iterator[tuple[str, bytes, str, dict]]:
    """(key, image bytes, caption, json) per sample of one shard; a clear error if it is corrupt."""
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
        samples = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            current: dict = {}
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.rpartition("/")[2].partition(".")
                if current and current["__key__"] != key:
                    samples.append(current)
                    current = {}
                current["__key__"] = key
                current[ext] = tar.extractfile(m).read()
            if current:
                samples.append(current)
            # tarfile stops quietly at a bad header after the first member: whatever follows the
            # last member must be the archive's zero padding, or the shard is damaged.
            end = tar.offset
        if data[end:].strip(b"\0"):
            raise tarfile.ReadError(f"unreadable data after byte {end}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"input shard {url!r} is unreadable or corrupt ({type(e).__name__}: {e}); "
                         f"fix or remove it from input.shards") from e
    for s in samples:
        yield _pair(s, url, image_key, text_key)


def _pair(s: dict, url: str, image_key: str, text_key: str) -> tuple[str, bytes, str, dict]:
    missing = [k for k in (image_key, text_key) if k not in s]
    if missing:
        raise ValueError(f"sample {s['__key__']!r} in {url!r} has no {' or '.join(missing)} "
                         f"(has {sorted(k for k in s if k != '__key__')}); set input.image_key / input.text_key")
    meta = json.loads(s["json"]) if "json" in s else {}
    return s["__key__"], s[image_key], s[text_key].decode("utf-8"), meta


def run_embed_job(spec: JobSpec, *, force: bool = False, executor=None) -> dict:
    t0 = time.time()
    inp = spec.input
    urls = expand(inp.shards)
    # Read (and so validate) every input before anything is written.
    rows, metas = [], []
    for url in urls:
        for key, img, txt, meta in read_pairs(url, inp.image_key, inp.text_key):
            rows.append({"index": len(rows), "image": img, "caption": txt})
            metas.append({"source_key": key, "source_shard": url, **meta})
    out = prepare_dir(spec, force)
    progress = Progress(out, job_id_for(spec))
    executor = executor or RayExecutor()
    writer = ShardWriter(out.url, spec.output.name, spec.output.shard_size, spec.model_dump(mode="json"), spec_hash(spec))
    start = writer.start_index
    progress.update("embed", done=start, total=len(rows), status="RUNNING")
    job_id = job_id_for(spec)
    stage = [(_stage("EmbedStage"), {"encoder": stage_config(spec, "input")["encoder"]}, spec.resources.embed)]
    if not writer.complete and rows[start:]:
        batches = executor.map(rows[start:], stage, inp.batch_size)
        for i, _, emb, a in in_order(batches, lambda i: i, start, ("emb", "alignment")):
            meta = {**metas[i], "source": "real", "job_id": job_id, "index": i,
                    "encoder": inp.encoder.model_dump(), "scores": {"image_text_alignment": round(float(a), 5)}}
            writer.write(make_sample(sample_key(job_id, i), rows[i]["caption"], emb, meta))
            progress.update("embed", done=i + 1)
    manifest = writer.close()
    progress.update("embed", done=len(rows), status="SUCCEEDED", force=True)
    stats = {"job_id": job_id, "spec_hash": spec_hash(spec), "input_shards": len(urls), "samples": manifest.samples,
             "shards": len(manifest.shards), "seconds": round(time.time() - t0, 2)}
    out.write_json(stats, "stats.json")
    stats = write_metrics_and_report(out, stats)
    progress.status = "SUCCEEDED"
    progress.save()
    return stats
