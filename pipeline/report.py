"""A job's (or any shard set's) report: metrics, counts, a projection, alignment, samples.

`collect(path)` gathers everything as one JSON-able dict (report.json); `pipeline.report_html`
renders it as a self-contained report.html. For a job directory the report covers two caption
sets: *generated* (every valid caption) and *selected* (what survived dedup and balancing and was
written to shards). For a plain shard directory it covers the shards' captions.
"""

from __future__ import annotations

import functools
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


def _subsample(n: int, limit: int | None, seed: int) -> np.ndarray | None:
    """Sorted positions of a seeded uniform sample of `limit` of `n` items, or None when all are kept."""
    if limit is None or limit >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, limit, replace=False))


def collect_job(directory: str | Path, limits: dict[str, int] | None = None, clusters: int = 16) -> dict:
    """The report of a job directory written by `run_job` (job.json, stages/, shards, stats.json).
    `limits` ({"generated": n, "selected": m}) measures a seeded uniform sample of that many captions of a set
    (`compare`: both sides at the same size); `clusters` is the most k-means clusters of cluster entropy."""
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
    limits = limits or {}
    if (keep := _subsample(len(valid), limits.get("generated"), seed)) is not None:
        valid, texts, concepts = valid[keep], [texts[i] for i in keep], [concepts[i] for i in keep]
    generated = caption_metrics(texts, cap["text_emb"][valid], concepts, bank, seed=seed, clusters=clusters,
                                near_dup_threshold=spec.scoring.near_dup_threshold)

    pos = {int(i): k for k, i in enumerate(cap["index"])}
    s_idx, s_texts, s_concepts, s_align = [], [], [], []
    for sample in iter_samples(out.url):
        meta = sample["json"]
        s_idx.append(pos[int(meta["index"])])
        s_texts.append(sample["txt"])
        s_concepts.append(meta.get("concepts") or meta.get("prompt_concepts") or [])
        s_align.append(meta.get("scores", {}).get("prior_alignment", np.nan))
    if (keep := _subsample(len(s_idx), limits.get("selected"), seed)) is not None:
        s_idx, s_texts, s_concepts, s_align = ([x[i] for i in keep] for x in (s_idx, s_texts, s_concepts, s_align))
    s_emb = cap["text_emb"][s_idx] if s_idx else np.zeros((0, cap["text_emb"].shape[1]))
    align = np.array(s_align, dtype=np.float64)
    align = align[~np.isnan(align)]
    selected = caption_metrics(s_texts, s_emb, s_concepts, bank, alignment=align, seed=seed, clusters=clusters,
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


@functools.lru_cache(maxsize=2)
def _encoder(name: str):
    """An encoder, loaded once per process (`compare` measures up to four sets with it)."""
    from generators.encoders import Encoder

    return Encoder(name)


def collect_shards(directory: str | Path, encoder: str | None = None, limit: int | None = None,
                   clusters: int = 16) -> dict:
    """The report of any shard directory (synthetic or real). Text embeddings come from `encoder`
    (an open_clip name), by default the encoder named in the manifest's spec; without one, the
    embedding metrics are left out. Memory is bounded: Vendi is streamed exactly over every caption,
    and the other embedding metrics use a uniform reservoir sample of EMBEDDING_ROWS captions. `limit` measures
    a seeded uniform sample of that many samples instead of all (`compare`)."""
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
    enc = _encoder(encoder) if encoder else None
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

    chosen = _subsample(m.samples, limit, 0)
    chosen = set(chosen.tolist()) if chosen is not None else None
    for position, s in enumerate(iter_samples(directory)):
        if chosen is not None and position not in chosen:
            continue
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
                                  alignment=align_arr if align else None, near_dup_threshold=threshold,
                                  clusters=clusters)
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


def collect(path: str | Path, encoder: str | None = None, limits: dict[str, int] | None = None,
            clusters: int = 16) -> dict:
    store = Store(path)
    if store.exists("job.json") and store.read_json("job.json")["spec"].get("kind", "synthesize") == "synthesize":
        return collect_job(path, limits, clusters)
    return collect_shards(path, encoder, (limits or {}).get("selected"), clusters)


def cluster_k(n: int, clusters: int = 16) -> int:
    """The k of cluster entropy for n captions (caption_metrics' rule: at least ~20 captions a cluster)."""
    return min(clusters, max(2, n // 20))


def compare(path_a: str | Path, path_b: str | Path, encoder: str | None = None) -> tuple[dict, dict]:
    """Both reports, measured at equal size: for each caption set both have (selected; generated too for two
    jobs), the larger is replaced by a seeded uniform sample of the smaller's size (distinct-n, Vendi and the
    duplicate rates all move with size), so cluster entropy also uses the same k on both sides. Each report's
    `comparison` says what was sampled; its `metrics_full` keeps the full-size metrics."""
    def checked(path):
        if not Store(path).exists():
            raise FileNotFoundError(f"{path}: no such file or directory")
        return collect(path, encoder)

    a, b = checked(path_a), checked(path_b)
    sets = [s for s in ("selected", "generated") if s in a["metrics"] and s in b["metrics"]]
    sizes = {s: (a["metrics"][s].get("n", 0), b["metrics"][s].get("n", 0)) for s in sets}
    note: dict[str, dict] = {}
    redo: dict[str, dict[str, int]] = {"A": {}, "B": {}}
    for s, (na, nb) in sizes.items():
        n = min(na, nb)
        note[s] = {"n": n, "cluster_k": cluster_k(n), "seed": 0 if a["kind"] == "shards" else None,
                   "subsampled": None, "from": None}
        if na != nb and n > 0:
            side = "A" if na > nb else "B"
            redo[side][s] = n
            note[s] |= {"subsampled": side, "from": max(na, nb)}
    for side, data, path in (("A", a, path_a), ("B", b, path_b)):
        if redo[side]:
            small = collect(path, encoder, limits=redo[side])
            data["metrics_full"] = data["metrics"]
            data["metrics"] = {**data["metrics"], **{s: small["metrics"][s] for s in redo[side]}}
            for s in redo[side]:
                note[s]["seed"] = (data["spec"] or {}).get("captions", {}).get("sampling", {}).get("seed", 0) \
                    if data["kind"] == "job" else 0
    for data in (a, b):
        data["comparison"] = note
    return a, b


def write_report(path: str | Path, data: dict | None = None) -> dict:
    """Write report.json and report.html into the job directory; returns the report data."""
    from pipeline.report_html import render

    data = data or collect(path)
    store = Store(path)
    store.write_bytes(json.dumps(data, indent=1, default=float).encode(), "report.json")
    store.write_bytes(render(data).encode("utf-8"), "report.html")
    return data
