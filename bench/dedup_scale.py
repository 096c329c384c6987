"""Near-duplicate removal at scale: SemDeDup-style selection (pipeline/dedup.py) against today's
exact greedy method (pipeline/selection.dedup), on synthetic caption embeddings.

Data (bench/dedup_data.py): clustered random unit vectors in 384 dimensions (5,000 topics, cosine
between two captions of a topic about 0.67), with near duplicates planted at a known rate (20%:
a perturbed copy of an earlier caption at a cosine drawn uniformly from [0.95, 0.999], so about
40% of them lie above the 0.98 threshold) and exact-duplicate texts at 2%. Texts are otherwise
distinct, so most captions survive exact dedup and near dedup does real work.

Recall and precision: both methods are greedy in index order, so the decisions on the first
10^5 captions depend only on those captions. The exact method runs on that prefix; the scaled
method's decisions on the prefix are taken from its 10^6 run (its 10^6-sized clustering), and also
from a run on the prefix alone. Recall = |removed by both| / |removed by exact|, precision =
|removed by both| / |removed by scaled|, over near-duplicate removals (exact-text duplicates are
removed identically by construction) and over all removals.

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/dedup_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dedup_data import planted_captions  # noqa: E402
from pipeline.dedup import SelectionConfig, select_local, select_ray  # noqa: E402
from pipeline.selection import dedup  # noqa: E402

RESULTS = Path(__file__).parent / "results"
CONCEPTS = tuple(f"concept {c}" for c in range(50))


def _slice(data: dict, n: int) -> dict:
    return {k: v[:n] for k, v in data.items()}


def _removed(keep: np.ndarray, n: int) -> np.ndarray:
    out = np.ones(n, dtype=bool)
    out[keep[keep < n]] = False
    return out


def _agreement(ours: np.ndarray, ref: np.ndarray, exact_ref: np.ndarray) -> dict:
    """ours/ref: removed masks; exact_ref: the exact method's exact-text removals."""
    near_ref, near_ours = ref & ~exact_ref, ours & ~exact_ref
    both = (near_ours & near_ref).sum()
    return {"near_recall": round(float(both / max(near_ref.sum(), 1)), 4),
            "near_precision": round(float(both / max(near_ours.sum(), 1)), 4),
            "recall_all": round(float((ours & ref).sum() / max(ref.sum(), 1)), 4),
            "precision_all": round(float((ours & ref).sum() / max(ours.sum(), 1)), 4),
            "removed_by_exact_method": int(ref.sum()), "near_removed_by_exact_method": int(near_ref.sum()),
            "removed_by_scaled_method": int(ours.sum()), "missed": int((near_ref & ~near_ours).sum()),
            "extra": int((near_ours & ~near_ref).sum())}


def _exact_method(data: dict, threshold: float) -> tuple[np.ndarray, np.ndarray, float]:
    t = time.perf_counter()
    keep, _, _ = dedup([str(x) for x in data["caption"]], data["text_emb"], threshold, exact=True)
    seconds = time.perf_counter() - t
    # which removals were exact-text ones: the first occurrence of each normalised text is kept
    from pipeline.selection import normalise_text

    seen: set[str] = set()
    exact = np.zeros(len(keep), dtype=bool)
    for i, x in enumerate(data["caption"]):
        t_ = normalise_text(str(x))
        exact[i] = t_ in seen
        seen.add(t_)
    return ~keep, exact & ~keep, seconds


def _ray_run(data: dict, cfg: SelectionConfig, cpus: int) -> tuple[np.ndarray, dict, float]:
    import ray

    from pipeline.run import init_ray

    init_ray(num_cpus=cpus)
    ray.data.DataContext.get_current().enable_progress_bars = False
    n = len(data["index"])
    refs = {k: ray.put(v) for k, v in data.items()}

    def rows(batch: dict) -> dict:
        i = batch["id"]
        return {k: ray.get(r)[i] for k, r in refs.items()}

    t = time.perf_counter()
    ds = ray.data.range(n, override_num_blocks=max(1, n // 20_000)).map_batches(
        rows, batch_format="numpy", batch_size=20_000)
    kept, stats = select_ray(ds, cfg)
    idx = np.sort(np.concatenate([b["index"] for b in kept.iter_batches(batch_size=None, batch_format="numpy")]))
    seconds = time.perf_counter() - t
    ray.shutdown()
    return idx, stats, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--prefix", type=int, default=100_000, help="captions the exact method runs on")
    ap.add_argument("--ray-n", type=int, default=100_000, help="captions the Ray Data version runs on (0: skip)")
    ap.add_argument("--threshold", type=float, default=0.98)
    ap.add_argument("--out", default=str(RESULTS / "dedup_scale.json"))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    data = planted_captions(args.n, dim=384, topics=5000, near_rate=0.2, exact_rate=0.02, seed=0)
    gen_s = time.perf_counter() - t
    print(f"generated {args.n} captions in {gen_s:.0f}s", flush=True)
    cfg = SelectionConfig(threshold=args.threshold, method="none", concepts=CONCEPTS)
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs",
        "data": {"n": args.n, "dim": 384, "topics": 5000, "near_rate": 0.2, "dup_cos": [0.95, 0.999],
                 "exact_rate": 0.02, "kind": "clustered random unit vectors with planted near duplicates",
                 "generate_seconds": round(gen_s, 1)},
        "threshold": args.threshold,
        "config": {"cluster_size": cfg.cluster_size, "sample_size": cfg.sample_size, "kmeans_iters": cfg.kmeans_iters,
                   "probes": cfg.probes}}

    def save() -> None:  # after every phase: a late phase cut short leaves the earlier ones written
        out.write_text(json.dumps(result, indent=1) + "\n")

    runs, sels = [], {}
    for n in sorted({args.n, args.prefix, 10_000}, reverse=True):  # the 10^6 run first
        t = time.perf_counter()
        sel = select_local(_slice(data, n), cfg)
        s = time.perf_counter() - t
        sels[n] = sel
        runs.append({"n": n, "seconds": round(s, 2), "steps": sel.seconds, "clusters": sel.stats["near_dup"]["clusters"],
                     "after_dedup": sel.stats["after_dedup"], "removed": sel.stats["duplicates_removed"]})
        print("scaled", runs[-1], flush=True)
        if n == args.n:
            result["scaled_local_peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
        result["scaled_local"] = sorted(runs, key=lambda r: r["n"])
        save()

    exact_runs = []
    for n in (10_000, args.prefix):
        ref, exact_ref, s = _exact_method(_slice(data, n), args.threshold)
        exact_runs.append({"n": n, "seconds": round(s, 2), "removed": int(ref.sum())})
        print("exact", exact_runs[-1], flush=True)
    p = args.prefix
    quality = {"on_prefix_of_full_run": _agreement(_removed(sels[args.n].keep, p), ref, exact_ref),
               "prefix_as_its_own_job": _agreement(_removed(sels[p].keep, p), ref, exact_ref)}
    print(json.dumps(quality, indent=1), flush=True)
    e1, e2 = exact_runs
    slope = np.log(e2["seconds"] / e1["seconds"]) / np.log(e2["n"] / e1["n"])
    full_s = result["scaled_local"][-1]["seconds"]
    result |= {"exact_greedy": exact_runs,
               "exact_greedy_at_n_extrapolated_seconds": round(e2["seconds"] * (args.n / e2["n"]) ** slope, 0),
               "exact_greedy_scaling_exponent": round(float(slope), 2), "quality": quality,
               "goal": {"seconds_at_1e6_le_600": full_s <= 600 if args.n == 1_000_000 else None,
                        "near_recall_ge_0.95": quality["on_prefix_of_full_run"]["near_recall"] >= 0.95}}
    save()
    _plot(result, out.with_suffix(".png"))

    if args.ray_n:
        rn = min(args.ray_n, args.n)
        idx, stats, s = _ray_run(_slice(data, rn), cfg, cpus=2)
        local = sels.get(rn) or select_local(_slice(data, rn), cfg)
        result["ray"] = {"n": rn, "seconds": round(s, 2), "local_seconds_same_n": next(
            (r["seconds"] for r in runs if r["n"] == rn), None),
            "same_kept_set_as_local": bool(np.array_equal(idx, local.keep)), "kept": int(len(idx)),
            "same_stats_as_local": json.loads(json.dumps(stats)) == json.loads(json.dumps(local.stats))}
        print("ray", result["ray"], flush=True)
        save()
    print(f"wrote {out}")


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    s = result["scaled_local"]
    e = result["exact_greedy"]
    a.loglog([r["n"] for r in s], [r["seconds"] for r in s], "o-", label="SemDeDup-style (pipeline/dedup.py)")
    a.loglog([r["n"] for r in e], [r["seconds"] for r in e], "s-", label="exact greedy (selection.dedup)")
    a.loglog([e[-1]["n"], s[-1]["n"]], [e[-1]["seconds"], result["exact_greedy_at_n_extrapolated_seconds"]], "s:",
             color="C1", label="exact greedy, extrapolated")
    a.axhline(600, color="grey", lw=0.8, ls="--", label="10 min goal")
    a.set_xlabel("captions")
    a.set_ylabel("seconds (2 shared cores)")
    a.legend(fontsize=7)
    q = result["quality"]
    names = list(q)
    x = np.arange(len(names))
    b.bar(x - 0.2, [q[k]["near_recall"] for k in names], 0.4, label="recall")
    b.bar(x + 0.2, [q[k]["near_precision"] for k in names], 0.4, label="precision")
    b.axhline(0.95, color="grey", lw=0.8, ls="--")
    b.set_xticks(x, [k.replace("_", " ") for k in names], fontsize=7)
    b.set_ylim(0.8, 1.0)
    b.set_title("near-duplicate removals vs the exact method (first 1e5)", fontsize=8)
    b.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
