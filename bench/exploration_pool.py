"""Pool several runs of bench/exploration_acceptance.py (the same budget, different seeds) into one table:
per condition, the mean and sd over every seed; per vision-language condition, its ratio to the pixel
baseline with the same novelty, the per-seed ratios (the seed fixes the layout, so seeds pair), and a 95 %
bootstrap interval of the ratio of means (seeds resampled with replacement, paired across conditions).

    .venv/bin/python bench/exploration_pool.py bench/results/exploration/acceptance-explore-98k.json \
        bench/results/exploration/acceptance-explore-98k-seeds345.json ... --out pooled-explore-98k

Runs are keyed by (condition, seed); a key present in two inputs must hold the same numbers, and every input
must share the budget (all but its seed list), or the script stops naming the first difference. An input
written `PATH:EMB=NAME[,EMB=NAME]` has its embedding EMB renamed NAME (a run with another CLIP beside the world
CLIP's):

    .venv/bin/python bench/exploration_pool.py ...98k.json ...seeds6to11.json \
        bench/results/exploration/acceptance-explore-explore-98k-view0.5.json:clip=clip_view0.5 --out pooled-explore-98k-view0.5
Writes bench/results/exploration/<out>.json and <out>.png (objects per episode, one dot per seed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._vlm import rel_path  # noqa: E402

OUT = ROOT / "bench" / "results" / "exploration"
METRICS = ("objects_per_episode", "rooms_per_episode", "distinct_objects")


def renamed(res: dict, emb: str, name: str) -> dict:
    """RES with embedding EMB's runs under the name NAME (condition `EMB+novelty` -> `NAME+novelty`)."""
    runs = [r | {"condition": name + r["condition"][len(emb):]} if r["condition"].startswith(emb + "+") else r
            for r in res["runs"]]
    return res | {"runs": runs}


def pool(results: list[dict]) -> dict[str, dict[int, dict]]:
    """(condition -> seed -> run) over RESULTS, checking the budgets agree and repeated runs are equal."""
    base = None
    runs: dict[str, dict[int, dict]] = {}
    for res in results:
        budget = {k: v for k, v in res["budget"].items() if k not in ("seeds", "workers")}
        if base is None:
            base = budget
        elif budget != base:
            diff = next(k for k in set(base) | set(budget) if base.get(k) != budget.get(k))
            raise SystemExit(f"budget.{diff} differs between inputs: {base.get(diff)!r} vs {budget.get(diff)!r}")
        for r in res["runs"]:
            seen = runs.setdefault(r["condition"], {}).get(r["seed"])
            if seen is not None and any(seen[m] != r[m] for m in METRICS):
                raise SystemExit(f"{r['condition']} seed {r['seed']} differs between inputs")
            runs[r["condition"]][r["seed"]] = r
    return runs


def ratio_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of mean(A) / mean(B), resampling the paired seeds."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    r = a[idx].mean(1) / np.maximum(b[idx].mean(1), 1e-12)
    return float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5))


def summarise(runs: dict[str, dict[int, dict]], baseline: str = "pixels") -> dict:
    """The per-condition table of `consumers.exploration.train.summarise` over every pooled seed, and the ratios."""
    from consumers.exploration.train import summarise as per_condition

    table = per_condition([by_seed[s] for by_seed in runs.values() for s in sorted(by_seed)])
    ratios = {}
    for cond, by_seed in runs.items():
        emb, _, nov = cond.partition("+")
        base = f"{baseline}+{nov}"
        if emb in (baseline, "random", "random_conv") or base not in runs:
            continue
        seeds = sorted(set(by_seed) & set(runs[base]))
        a = np.array([by_seed[s]["objects_per_episode"] for s in seeds], float)
        b = np.array([runs[base][s]["objects_per_episode"] for s in seeds], float)
        lo, hi = ratio_interval(a, b)
        ratios[f"{cond} / {base}"] = {
            "seeds": seeds, "ratio_of_means": round(float(a.mean() / b.mean()), 3),
            "bootstrap_95": [round(lo, 3), round(hi, 3)],
            "per_seed": [round(float(x / y), 3) for x, y in zip(a, b)],
            "seeds_at_or_above_1.5": int((a / b >= 1.5).sum())}
    return {"summary": table, "objects_per_episode_ratio": ratios}


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.6))
    for i, n in enumerate(names):
        v = table[n]["objects_per_episode"]["values"]
        colour = "tab:green" if n.startswith(("clip", "vlm", "caption")) else "grey" if n == "random" else "tab:orange"
        ax.scatter(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, color=colour, s=14)
        ax.hlines(np.mean(v), i - 0.3, i + 0.3, color="black")
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("distinct objects per episode\n(last quarter; one dot per seed)", fontsize=8)
    n = max(len(table[k]["seeds"]) for k in names)
    ax.set_title(f"explore task, up to {n} seeds pooled (line: mean)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="acceptance JSONs of bench/exploration_acceptance.py (PATH or "
                                              "PATH:EMB=NAME[,EMB=NAME])")
    ap.add_argument("--out", default="pooled-explore", help="result name under bench/results/exploration/")
    args = ap.parse_args()
    loaded, names = [], []
    for arg in args.inputs:
        path, _, rename = arg.partition(":")
        res = json.loads(Path(path).read_text())
        for pair in filter(None, rename.split(",")):
            emb, eq, name = pair.partition("=")
            if not (eq and emb and name):
                raise SystemExit(f"input {arg!r}: write PATH:EMB=NAME[,EMB=NAME] to rename embeddings")
            res = renamed(res, emb, name)
        loaded.append(res)
        names.append(rel_path(Path(path)) + (f":{rename}" if rename else ""))
    res = summarise(pool(loaded))
    res = {"issue": 19, "inputs": names, **res}
    (OUT / f"{args.out}.json").write_text(json.dumps(res, indent=1))
    plot(res["summary"], OUT / f"{args.out}.png")
    for cond, t in res["summary"].items():
        o = t["objects_per_episode"]
        print(f"{cond:24s} n={len(t['seeds']):2d}  objects/episode {o['mean']:.2f} ± {o['std']:.2f}")
    for k, r in res["objects_per_episode_ratio"].items():
        print(f"{k:36s} {r['ratio_of_means']:.3f}  95% [{r['bootstrap_95'][0]:.3f}, {r['bootstrap_95'][1]:.3f}]"
              f"  seeds >= 1.5: {r['seeds_at_or_above_1.5']}/{len(r['seeds'])}")


if __name__ == "__main__":
    main()
