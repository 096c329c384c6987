"""The `embed` job kind: real image-text WebDataset shards → encoder embeddings → shards in the
same sample contract (`source: real`). This is how a user's real pairs, and the world's
human-annotated split, become VLM training data beside the synthetic ones.

The input streams through workers twice and never through the driver: first every input shard is
read and counted (which validates it, before anything is written), then each output shard k
(samples [k*S, (k+1)*S) in input order) is made by a worker that reads just the input shards it
needs, embeds them in model batches at fixed offsets from the shard's start, and writes it.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator

import fsspec
import numpy as np

from contracts.shards import iter_tar_raw, make_sample, sample_key, shard_name, write_shard
from contracts.storage import Store
from pipeline.executors import Step
from pipeline.job import JobContext, write_shards
from pipeline.paths import resolve_model_paths
from pipeline.spec import JobSpec, parse_spec


def expand(patterns: list[str]) -> list[str]:
    """Brace-expand shard patterns (`data/train-{000000..000009}.tar`), as WebDataset does."""
    import braceexpand

    return [p for pat in patterns for p in braceexpand.braceexpand(pat)]


def read_pairs(url: str, image_key: str, text_key: str) -> Iterator[tuple[str, bytes, str, dict]]:
    """(key, image bytes, caption, json) per sample of one shard; a clear error if it is corrupt."""
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
        # a sample's key is its file name's stem (the shard's own directories dropped)
        samples = [{**s, "__key__": s["__key__"].rpartition("/")[2]}
                   for s in iter_tar_raw(io.BytesIO(data), strict=True)]
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


def job_layout(spec: JobSpec) -> dict:
    return {}


class CountInput:
    """An input shard URL in; its sample count out (reading it whole validates it)."""

    def __init__(self, image_key: str, text_key: str, threads: int | None = None, num_gpus: float = 0.0) -> None:
        self.image_key, self.text_key = image_key, text_key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        url = str(batch["url"][0])
        n = sum(1 for _ in read_pairs(url, self.image_key, self.text_key))
        return {"pos": batch["pos"], "url": batch["url"], "samples": np.array([n])}


class EmbedShards:
    """An output shard id in; its samples read from the input shards, embedded, written; its info out."""

    def __init__(self, spec: dict, store: str, urls: list[str], counts: list[int], job_id: str,
                 threads: int | None = None, num_gpus: float = 0.0) -> None:
        from pipeline.stages import EmbedStage, torch_device

        self.spec = parse_spec(spec)
        self.store, self.urls, self.job_id = Store(store), urls, job_id
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.stage = EmbedStage(self.spec.input.encoder.model_dump(mode="json"), threads=threads,
                                device=torch_device(num_gpus, "embed"))
        self._cache: dict[int, list] = {}

    def _input(self, j: int) -> list:
        if j not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[j] = list(read_pairs(self.urls[j], self.spec.input.image_key, self.spec.input.text_key))
        return self._cache[j]

    def _rows(self, lo: int, hi: int) -> list[tuple]:
        """(key, image, caption, json, input url) of samples [lo, hi)."""
        out, p = [], lo
        while p < hi:
            j = int(np.searchsorted(self.offsets, p, side="right")) - 1
            base, b = int(self.offsets[j]), min(hi, int(self.offsets[j + 1]))
            out += [(*r, self.urls[j]) for r in self._input(j)[p - base:b - base]]
            p = b
        return out

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s, inp, size = int(batch["shard"][0]), self.spec.input, self.spec.output.shard_size
        lo, hi = s * size, min((s + 1) * size, int(self.offsets[-1]))
        samples = []
        for a in range(lo, hi, inp.batch_size):
            b = min(a + inp.batch_size, hi)
            rows = self._rows(a, b)
            out = self.stage({"index": np.arange(a, b), "image": np.array([r[1] for r in rows], dtype=object),
                              "caption": np.array([r[2] for r in rows], dtype=object)})
            for j, (key, _, txt, meta, url) in enumerate(rows):
                i = a + j
                meta = {"source_key": key, "source_shard": url, **meta, "source": "real", "job_id": self.job_id,
                        "index": i, "encoder": inp.encoder.model_dump(),
                        "scores": {"image_text_alignment": round(float(out["alignment"][j]), 5)}}
                samples.append(make_sample(sample_key(self.job_id, i), txt, out["emb"][j], meta))
        info = write_shard(self.store, shard_name(self.spec.output.name, s), samples, lo)
        return {"shard": np.array([s]), "info": np.array([json.dumps(vars(info))], dtype=object)}


def before_open(spec: JobSpec, executor) -> tuple[list[str], list[int]]:
    """Read (and so validate) every input shard before anything is written; their sample counts."""
    inp = spec.input
    urls = expand(inp.shards)
    count = Step.of("embed", CountInput, {"image_key": inp.image_key, "text_key": inp.text_key},
                    spec.resources.embed.model_copy(update={"num_gpus": 0.0}))
    counts = [0] * len(urls)
    for row in executor.run([{"pos": j, "url": u} for j, u in enumerate(urls)], [count]):
        counts[int(row["pos"])] = int(row["samples"])
    return urls, counts


def run(ctx: JobContext, pre: tuple[list[str], list[int]]) -> dict:
    urls, counts = pre
    spec = ctx.spec
    step = Step.of("embed", EmbedShards, {"spec": resolve_model_paths(spec).model_dump(mode="json"),
                                          "store": ctx.store.url, "urls": urls, "counts": counts,
                                          "job_id": ctx.job_id}, spec.resources.embed)
    manifest = write_shards(ctx, sum(counts), step, ("embed",))
    return ctx.finish({"input_shards": len(urls), "samples": manifest.samples, "shards": len(manifest.shards)})
