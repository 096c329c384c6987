"""A job's (or any shard set's) report: metrics, counts, a projection, alignment, samples.

`collect(path)` gathers everything as one JSON-able dict (report.json); `pipeline.report_html`
renders it as a self-contained report.html. For a job directory the report covers two caption
sets: *generated* (every valid caption) and *selected* (what survived dedup and balancing and was
written to shards). For a plain shard directory it covers the shards' captions.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from contracts.storage import Store
from pipeline.metrics import METRIC_DOCS, caption_metrics, vendi_from_gram

log = logging.getLogger(__name__)
REPORT_VERSION = 1
PROJECTION_POINTS = 3000  # points in the 2-D projection (a random sample beyond)
ALIGNMENT_POINTS = 20_000  # alignment values kept for the histogram
EMBEDDING_ROWS = 200_000  # rows of a shard set's embeddings held for the embedding metrics (sampled beyond)
SAMPLES_PER_CONCEPT = 5


def _first_concept(cs) -> str:
    return cs[0] if len(cs) else "(none)"


def _projection(emb: np.ndarray, concepts: list[list[str]], seed: int = 0) -> dict:
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(emb), PROJECTION_POINTS, replace=False) if len(emb) > PROJECTION_POINTS else np.arange(len(emb))
    if len(idx) < 3:
        return {"method": "pca", "x": [], "y": [], "concept": [], "points": 0, "of": len(emb)}
    u = emb[idx] / np.maximum(np.linalg.norm(emb[idx], axis=1, keepdims=True), 1e-12)
    pca = PCA(n_components=2, random_state=seed).fit(u)
    xy = pca.transform(u)
    return {"method": "pca", "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_],
            "x": [round(float(v), 4) for v in xy[:, 0]], "y": [round(float(v), 4) for v in xy[:, 1]],
            "concept": [_first_concept(concepts[i]) for i in idx], "points": int(len(idx)), "of": int(len(emb))}


def _samples(texts: list[str], concepts: list[list[str]], seed: int = 0) -> dict[str, list[str]]:
    by: dict[str, list[str]] = {}
    order = np.random.default_rng(seed).permutation(len(texts))
    for i in order:
        c = _first_concept(concepts[i])
        if len(by.setdefault(c, [])) < SAMPLES_PER_CONCEPT:
            by[c].append(texts[i])
    return dict(sorted(by.items()))


def _alignment_values(a: np.ndarray, seed: int = 0) -> list[float]:
    if len(a) > ALIGNMENT_POINTS:
        a = np.random.default_rng(seed).choice(a, ALIGNMENT_POINTS, replace=False)
    return [round(float(v), 4) for v in a]


def collect_job(directory: str | Path) -> dict:
    """The report of a job directory written by `run_job` (job.json, stages/, shards, stats.json)."""
    from contracts.shards import iter_samples
    from pipeline.prompts import build_requests
    from pipeline.selection import match_concepts
    from pipeline.spec import parse_spec

    out = Store(directory)
    job = out.read_json("job.json")
    spec = parse_spec(job["spec"])
    stats = out.read_json("stats.json") if out.exists("stats.json") else {}
    bank = list(spec.concepts.items)
    chunks = [out.load_npz(p) for p in sorted(out.glob("stages/captions-*.npz"))]
    cap = {k: np.concatenate([c[k] for c in chunks]) for k in ("index", "caption", "drop", "text_emb")}
    requests = build_requests(spec)
    valid = np.nonzero(cap["drop"] == "")[0]
    texts = [str(t) for t in cap["caption"][valid]]
    concepts = [match_concepts(t, bank) or list(requests[int(cap["index"][i])].concepts) for t, i in zip(texts, valid)]
    seed = spec.captions.sampling.seed
    generated = caption_metrics(texts, cap["text_emb"][valid], concepts, bank, seed=seed,
                                near_dup_threshold=spec.scoring.near_dup_threshold)

    pos = {int(i): k for k, i in enumerate(cap["index"])}
    s_idx, s_texts, s_concepts, s_align = [], [], [], []
    for sample in iter_samples(out.url):
        meta = sample["json"]
        s_idx.append(pos[int(meta["index"])])
        s_texts.append(sample["txt"])
        s_concepts.append(meta.get("concepts") or meta.get("prompt_concepts") or [])
        s_align.append(meta.get("scores", {}).get("prior_alignment", np.nan))
    s_emb = cap["text_emb"][s_idx] if s_idx else np.zeros((0, cap["text_emb"].shape[1]))
    align = np.array(s_align, dtype=np.float64)
    align = align[~np.isnan(align)]
    selected = caption_metrics(s_texts, s_emb, s_concepts, bank, alignment=align, seed=seed,
                               near_dup_threshold=spec.scoring.near_dup_threshold)
    return {
        "version": REPORT_VERSION, "kind": "job", "title": f"{spec.name} ({job['job_id']})", "source": str(directory),
        "created_at": time.time(), "spec": job["spec"], "spec_hash": job["spec_hash"], "stats": stats,
        "metric_docs": METRIC_DOCS,
        "metrics": {"generated": _drop_counts(generated), "selected": _drop_counts(selected)},
        "concept_counts": {"before_balance": generated.get("concept_counts", {}),
                           "after_balance": selected.get("concept_counts", {})},
        "projection": _projection(s_emb, s_concepts, seed) if len(s_emb) else _projection(
            cap["text_emb"][valid], concepts, seed),
        "alignment": {"values": _alignment_values(align, seed),
                      **{k: v for k, v in selected.items() if k.startswith("prior_alignment")}},
        "samples": _samples(s_texts, s_concepts, seed) if s_texts else _samples(texts, concepts, seed),
    }


def _drop_counts(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "concept_counts"}


def collect_shards(directory: str | Path, encoder: str | None = None) -> dict:
    """The report of any shard directory (synthetic or real). Text embeddings come from `encoder`
    (an open_clip name), by default the encoder named in the manifest's spec; without one, the
    embedding metrics are left out. Memory is bounded: Vendi is streamed exactly over every caption,
    and the other embedding metrics use a uniform reservoir sample of EMBEDDING_ROWS captions."""
    from contracts.shards import Manifest, iter_samples
    from pipeline.metrics import alignment_summary, balance_metrics, concept_counts, distinct_n, exact_duplicate_rate

    m = Manifest.load(directory)
    if m is None:
        raise FileNotFoundError(f"{directory}: no manifest.json (not a shard directory)")
    spec = m.spec or {}
    bank = (spec.get("concepts") or {}).get("items")
    for section in ("synthesis", "input"):  # a synthesize job's encoder, or an embed job's
        if encoder is None and (spec.get(section) or {}).get("encoder"):
            encoder = spec[section]["encoder"]["name"]
    enc = None
    if encoder:
        from generators.encoders import Encoder

        enc = Encoder(encoder)
    rng = np.random.default_rng(0)
    texts, concepts, align = [], [], []
    res_emb: list[np.ndarray] = []  # reservoir: (text index, embedding)
    res_idx: list[int] = []
    cov, batch = None, []

    def flush():
        nonlocal cov
        if enc is not None and batch:
            e = enc.encode_text([texts[i] for i in batch]).pooled.float().numpy()
            u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            cov = u.T @ u if cov is None else cov + u.T @ u
            for i, row in zip(batch, e):
                if len(res_idx) < EMBEDDING_ROWS:
                    res_idx.append(i)
                    res_emb.append(row)
                elif (j := int(rng.integers(0, i + 1))) < EMBEDDING_ROWS:
                    res_idx[j], res_emb[j] = i, row
        batch.clear()

    for s in iter_samples(directory):
        meta = s.get("json") or {}
        texts.append(s["txt"])
        concepts.append(meta.get("concepts") or meta.get("prompt_concepts") or [])
        scores = meta.get("scores") or {}
        if (a := scores.get("prior_alignment", scores.get("image_text_alignment"))) is not None:
            align.append(a)
        batch.append(len(texts) - 1)
        if len(batch) >= 256:
            flush()
    flush()
    bank = list(bank) if bank else sorted({c for cs in concepts for c in cs})
    align_arr = np.array(align, dtype=np.float64)
    if res_emb:
        emb = np.stack(res_emb)
        threshold = (spec.get("scoring") or {}).get("near_dup_threshold", 0.95)
        metrics = caption_metrics([texts[i] for i in res_idx], emb, [concepts[i] for i in res_idx], bank,
                                  alignment=align_arr if align else None, near_dup_threshold=threshold)
        metrics["vendi"] = vendi_from_gram(cov, len(texts))  # exact, over every caption
        metrics["vendi_per_caption"] = metrics["vendi"] / min(len(texts), emb.shape[1])
        metrics["embedding_sample"] = len(res_idx)
    else:
        emb = None
        metrics = {"exact_duplicate_rate": exact_duplicate_rate(texts),
                   **(alignment_summary(align_arr) if align else {})}
    # Streamed over every caption, whatever was sampled above.
    metrics.update({"n": len(texts), **{f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)},
                    **balance_metrics(concept_counts(concepts, bank))})
    counts = concept_counts(concepts, bank)
    return {
        "version": REPORT_VERSION, "kind": "shards", "title": f"{m.name} ({Path(str(directory)).name})",
        "source": str(directory), "created_at": time.time(), "spec": m.spec, "spec_hash": m.spec_hash,
        "stats": {"samples": m.samples, "shards": len(m.shards)}, "metric_docs": METRIC_DOCS, "encoder": encoder,
        "metrics": {"selected": _drop_counts(metrics)},
        "concept_counts": {"after_balance": counts},
        "projection": _projection(emb, [concepts[i] for i in res_idx]) if emb is not None else None,
        "alignment": {"values": _alignment_values(align_arr), **alignment_summary(align_arr)} if align else None,
        "samples": _samples(texts, concepts),
    }


def collect(path: str | Path, encoder: str | None = None) -> dict:
    store = Store(path)
    if store.exists("job.json") and store.read_json("job.json")["spec"].get("kind", "synthesize") == "synthesize":
        return collect_job(path)
    return collect_shards(path, encoder)


def write_report(path: str | Path, data: dict | None = None) -> dict:
    """Write report.json and report.html into the job directory; returns the report data."""
    from pipeline.report_html import render

    data = data or collect(path)
    store = Store(path)
    store.write_bytes(json.dumps(data, indent=1, default=float).encode(), "report.json")
    store.write_bytes(render(data).encode("utf-8"), "report.html")
    return data
