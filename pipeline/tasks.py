"""The work items of a job, as Ray Data stage classes over one item per batch (a chunk id or a
shard id). Each rebuilds its inputs from the spec and the job's store, runs its model stage on
model batches at fixed index boundaries, writes what it made to the store (temporary name, then
rename) and returns only small metadata. Fixed boundaries are what make a job's bytes independent
of the executor, the number of workers, and where a resumed run picks up: the same rows always
meet the model in the same batches.

Chunk k of the caption requests is [k*C, (k+1)*C), with C a multiple of captions.batch_size; shard
k of a job's final samples is [k*S, (k+1)*S) with model batches at multiples of the stage's batch
size from the shard's start.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter

import numpy as np

from contracts.shards import make_sample, sample_key, shard_name, write_shard
from contracts.storage import Store
from pipeline.prompts import RequestPlan, derive_seed
from pipeline.spec import JobSpec, parse_spec


def caption_chunk_name(k: int) -> str:
    return f"stages/captions-{k:05d}.npz"


def selection_chunk_name(k: int) -> str:
    return f"stages/selection-{k:05d}.npz"


def batches(lo: int, hi: int, size: int):
    """[lo, hi) cut at lo + multiples of `size`."""
    for a in range(lo, hi, size):
        yield a, min(a + size, hi)


def _one(batch: dict, key: str) -> int:
    return int(batch[key][0])


def _out(**cols) -> dict[str, np.ndarray]:
    return {k: np.array([v], dtype=object if isinstance(v, (str, bytes)) else None) for k, v in cols.items()}


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


class _Task:
    def __init__(self, spec: dict, threads: int | None, num_gpus: float, stage: str) -> None:
        from pipeline.stages import torch_device

        self.spec: JobSpec = parse_spec(spec)
        self.device = torch_device(num_gpus, stage)
        self.threads = threads


# ---------------------------------------------------------------- captions


class CaptionChunks(_Task):
    """A chunk id in; the chunk's captions and drop reasons out (as one JSON string: the next
    stage, scoring, may sit on other actors or nodes)."""

    def __init__(self, spec: dict, chunk_rows: int, threads: int | None = None, num_gpus: float = 0.0) -> None:
        from pipeline.stages import CaptionStage

        super().__init__(spec, threads, num_gpus, "caption")
        self.plan = RequestPlan(self.spec)
        self.chunk_rows = chunk_rows
        self.stage = CaptionStage(self.spec.captions.model_dump(mode="json"), threads=threads, device=self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = _one(batch, "chunk")
        lo, hi = k * self.chunk_rows, min((k + 1) * self.chunk_rows, len(self.plan))
        caps: list[str] = []
        drops: list[str] = []
        flags: list[str] = []
        for a, b in batches(lo, hi, self.spec.captions.batch_size):
            reqs = [self.plan[i] for i in range(a, b)]
            out = self.stage({"index": np.arange(a, b), "prompt": np.array([r.prompt for r in reqs], dtype=object),
                              "seed": np.array([r.seed for r in reqs]),
                              "concepts": np.array([json.dumps(list(r.concepts)) for r in reqs], dtype=object)})
            caps += [str(c) for c in out["caption"]]
            drops += [str(d) for d in out["drop"]]
            flags += [str(f) for f in out.get("flags", [""] * (b - a))]
        return _out(chunk=k, captions=json.dumps({"caption": caps, "drop": drops, "flags": flags}))


class ScoreChunks(_Task):
    """A chunk's captions in; their text embeddings computed, the chunk written to the store
    (`stages/captions-K.npz`: index, caption, drop, text_emb); its name, counts and sha256 out."""

    def __init__(self, spec: dict, chunk_rows: int, store: str, threads: int | None = None,
                 num_gpus: float = 0.0) -> None:
        from pipeline.stages import ScoreStage

        super().__init__(spec, threads, num_gpus, "score")
        self.n = len(RequestPlan(self.spec))
        self.chunk_rows, self.store = chunk_rows, Store(store)
        scoring = self.spec.scoring.encoder
        self.stage = ScoreStage(self.spec.synthesis.encoder.model_dump(mode="json"), threads=threads,
                                device=self.device, text_encoder=scoring.model_dump(mode="json") if scoring else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = _one(batch, "chunk")
        got = json.loads(str(batch["captions"][0]))
        lo, hi = k * self.chunk_rows, min((k + 1) * self.chunk_rows, self.n)
        caption, drop = np.array(got["caption"]), np.array(got["drop"])
        flags = np.array(got.get("flags", [""] * len(caption)))
        embs = [self.stage({"caption": caption[a - lo:b - lo]})["text_emb"]
                for a, b in batches(lo, hi, self.spec.captions.batch_size)]
        data = npz_bytes(index=np.arange(lo, hi), caption=caption, drop=drop, text_emb=np.concatenate(embs),
                         flags=flags)
        name = caption_chunk_name(k)
        self.store.write_bytes(data, name)
        drops = Counter(str(d) for d in drop if d)
        return _out(chunk=k, name=name, rows=hi - lo, valid=int((drop == "").sum()), drops=json.dumps(drops),
                    sha256=hashlib.sha256(data).hexdigest())


# ---------------------------------------------------------------- synthesis


class SelectedRows:
    """The final samples of a synthesize job by position: position p is the p-th kept caption in
    index order. `kept` holds each caption chunk's number of kept rows (small: one int per chunk)."""

    def __init__(self, store: Store, kept: list[int]) -> None:
        self.store = store
        self.offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        self._cache: dict[int, tuple] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _chunk(self, k: int) -> tuple:
        if k not in self._cache:
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            cap = self.store.load_npz(caption_chunk_name(k))
            sel = self.store.load_npz(selection_chunk_name(k))
            rows = sel["index"] - cap["index"][0] if len(cap["index"]) else sel["index"]
            self._cache[k] = (sel["index"], cap["caption"][rows], sel["matched"], sel["nearest"])
        return self._cache[k]

    def rows(self, lo: int, hi: int) -> dict[str, list]:
        """index, caption, matched concepts (JSON) and nearest-kept cosine of positions [lo, hi)."""
        out: dict[str, list] = {"index": [], "caption": [], "matched": [], "nearest": []}
        p = lo
        while p < hi:
            k = int(np.searchsorted(self.offsets, p, side="right")) - 1
            a, b = p - int(self.offsets[k]), min(hi, int(self.offsets[k + 1])) - int(self.offsets[k])
            idx, cap, matched, nearest = self._chunk(k)
            out["index"] += [int(i) for i in idx[a:b]]
            out["caption"] += [str(c) for c in cap[a:b]]
            out["matched"] += [str(m) for m in matched[a:b]]
            out["nearest"] += [float(x) for x in nearest[a:b]]
            p += b - a
        return out


def generator_meta(spec: JobSpec) -> dict:
    syn = spec.synthesis
    g = {"captions": {"backend": spec.captions.backend, "model": spec.captions.model},
         "prior": syn.prior, "encoder": syn.encoder.model_dump(), "scheduler": syn.scheduler,
         "steps": syn.steps, "guidance_scale": syn.guidance_scale}
    if syn.space == "pixel":
        g |= {"space": "pixel", "decoder": syn.decoder, "decoder_steps": syn.decoder_steps,
              "decoder_guidance_scale": syn.decoder_guidance_scale}
    return g


class SynthesizeShards(_Task):
    """A shard id in; its captions read from the store, synthesized by the prior (or drawn, in
    pixel space), the shard written and renamed; its ShardInfo (and alignment sum) out."""

    def __init__(self, spec: dict, store: str, kept: list[int], job_id: str, key_id: str,
                 threads: int | None = None, num_gpus: float = 0.0, generator: dict | None = None) -> None:
        from pipeline.stages import PixelSynthesizeStage, SynthesizeStage

        super().__init__(spec, threads, num_gpus, "synthesize")
        self.store = Store(store)
        self.rows = SelectedRows(self.store, kept)
        self.plan = RequestPlan(self.spec)
        self.job_id, self.key_id = job_id, key_id
        self.pixel = self.spec.synthesis.space == "pixel"
        cls = PixelSynthesizeStage if self.pixel else SynthesizeStage
        self.stage = cls(self.spec.synthesis.model_dump(mode="json"), threads=threads, device=self.device)
        self.generator = generator or generator_meta(self.spec)  # the driver's: models as the spec names them

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        s, syn, size = _one(batch, "shard"), self.spec.synthesis, self.spec.output.shard_size
        lo, hi = s * size, min((s + 1) * size, len(self.rows))
        samples, align = [], 0.0
        for a, b in batches(lo, hi, syn.batch_size):
            r = self.rows.rows(a, b)
            out = self.stage({"index": np.array(r["index"]), "caption": np.array(r["caption"], dtype=object)})
            prompt_concepts = self.plan.concepts(r["index"])
            for j, i in enumerate(r["index"]):
                al = float(out["alignment"][j])
                align += al
                meta = {"source": "synthetic", "job_id": self.job_id, "index": i,
                        "prompt_concepts": list(prompt_concepts[j]), "concepts": json.loads(r["matched"][j]),
                        "seed": derive_seed("prior", syn.seed, i), "generator": self.generator,
                        "scores": {"prior_alignment": round(al, 5), "nearest_kept_cosine": (round(float(r["nearest"][j]), 5)
                                                                            if r["nearest"][j] > -1.0 else None)}}
                png = None
                if self.pixel:
                    meta["decoder_seed"] = derive_seed("decoder", syn.seed, i)
                    if np.isfinite(out["prior_cosine"][j]):  # cosine of the decoded image's embedding to the prior's
                        meta["scores"]["prior_cosine"] = round(float(out["prior_cosine"][j]), 5)
                    png = bytes(out["png"][j])
                samples.append(make_sample(sample_key(self.key_id, i), r["caption"][j], out["emb"][j], meta, png=png))
        info = write_shard(self.store, shard_name(self.spec.output.name, s), samples, lo)
        return _out(shard=s, info=json.dumps(vars(info)), alignment_sum=align)


def cleaning_counts(url: str, n_chunks: int) -> dict[str, int]:
    """{flag: count} of the caption cleaning over every chunk of a job (a chunk without flags counts nothing)."""
    from generators.cleaning import count_flags

    store, total = Store(url), Counter()
    for k in range(n_chunks):
        c = store.load_npz(caption_chunk_name(k), keys=("flags",))
        total.update(count_flags([str(f) for f in c.get("flags", [])]))
    return dict(total)
