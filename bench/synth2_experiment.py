"""The Synth² experiment on the embedded world: does (LLM caption, prior-synthesized embedding) data help a VLM?

At equal training steps and several seeds, train the VLM on
  (a) human-annotated pairs only (the world's long-tailed train split, some compositions absent),
  (b) human-annotated + synthetic (a synth2 job over all 48 compositions), mixed by weight,
  (c) synthetic only,
and evaluate every model on the balanced test split through the encoder (real images → CLIP image tower →
VLM): CIDEr, BLEU-4, per-attribute accuracy, and composition accuracy on held-out compositions. Then a
data-efficiency curve (synthetic-only with N synthetic pairs) and the levers: the synthetic share of the
mix, and noise injection on the embeddings (CapDec) against the gap between prior samples and real ones.

Every finished run is saved to the results JSON at once, so an interrupted experiment resumes where it
stopped. Quality figures only (no timing), so it may share the machine.

    .venv/bin/python bench/synth2_experiment.py                 # ~45-60 min on 2 cores
    .venv/bin/python bench/synth2_experiment.py --steps 60 --seeds 0 --curve --levers   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._vlm import train_and_score  # noqa: E402

# Every training condition, in table order: the run-name prefix and its row label.
CONDITIONS = {"a_human": "(a) human-annotated only", "b_human+synthetic": "(b) human + synthetic",
              "c_synthetic": "(c) synthetic only",
              "b_pairs_human+synthetic": "(b) human + synthetic with two-concept prompts",
              "c_pairs_synthetic": "(c) synthetic only, with two-concept prompts",
              "b_pixel_human+synthetic": "(b) human + synthetic, pixel path",
              "c_pixel_synthetic": "(c) synthetic only, pixel path",
              "b_worldlm_matched_human+synthetic": "(b) human + world-LM synthetic, cut to the SmolLM2 set's size",
              "c_worldlm_matched_synthetic": "(c) world-LM synthetic only, cut to the SmolLM2 set's size",
              "b_smollm2_human+synthetic": "(b) human + SmolLM2-135M-Instruct synthetic",
              "c_smollm2_synthetic": "(c) SmolLM2-135M-Instruct synthetic only"}


def synthetic_job(world: Path, out: Path, pixel: bool = False, per_prompt: int = 1, config: str = "demo.yaml",
                  per_concept: int | None = None) -> Path:
    """The demo job (configs/demo.yaml) on this world, written to `out` (resumed / skipped when done);
    with `pixel`, the same job through the pixel path (synthesis.space: pixel, the world's pixel decoder).
    `config` names another job spec in configs/ (e.g. demo-smollm2.yaml: captions by a real LLM that never saw
    the world); its captioner is kept unless it is the world's LM."""
    from pipeline.run import run_spec
    from pipeline.spec import parse_spec

    d = yaml.safe_load((ROOT / "configs" / config).read_text())
    if d["captions"]["model"] == "world/lm":
        d["captions"]["model"] = str(world / "lm")
    if per_concept:
        d["captions"]["per_concept"] = per_concept
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"})
    if pixel:
        d["synthesis"].update(space="pixel", decoder=str(world / "pixel"), decoder_steps=25)
    if per_prompt > 1:  # prompts naming several concepts: the LM writes relations and pairs as well
        d["concepts"]["per_prompt"] = per_prompt
        d["captions"]["per_concept"] = 50 * per_prompt
    d["output"].update(dir=str(out), name="synthetic")
    spec = parse_spec(d)
    if not (out / "manifest.json").exists() or not json.loads((out / "manifest.json").read_text()).get("complete"):
        run_spec(spec, local=True)
    return out


def subset(src: Path, n: int, out: Path, seed: int = 0) -> Path:
    """A random `n`-sample subset of a shard directory, as its own shard directory."""
    from contracts.shards import Manifest, ShardWriter, iter_tar, make_sample, shard_paths

    if (out / "manifest.json").exists() and (m := Manifest.load(out)) and m.complete and m.samples == n:
        return out
    samples = [s for p in shard_paths(src) for s in iter_tar(p)]
    keep = sorted(np.random.default_rng(seed).choice(len(samples), n, replace=False))
    w = ShardWriter(out, out.name, 1000)
    for i in keep:
        s = samples[i]
        w.write(make_sample(s["__key__"], s["txt"], s["emb.npy"], s["json"]))
    w.close()
    return out


def run_one(name: str, sources: list[str], args, work: Path, results: dict, results_path: Path, seed: int,
            **overrides) -> dict:
    if name in results["runs"]:
        return results["runs"][name]
    scores = train_and_score(sources, args.world, work / name, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                             seed=seed, threads=args.threads, **overrides)
    row = {"sources": sources, "seed": seed, **overrides, **scores}
    results["runs"][name] = row
    results_path.write_text(json.dumps(results, indent=1))
    print(f"{name:28s} CIDEr {row['cider']:.3f}  BLEU-4 {row['bleu4']:.3f}  held-out comp {row['held_out_composition']:.3f}"
          f"  ({row['train_seconds']:.0f}+{row['eval_seconds']:.0f} s)", flush=True)
    return row


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = np.array(values, dtype=float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def summarise(results: dict, seeds: list[int]) -> dict:
    runs = results["runs"]
    table = {}
    for cond in CONDITIONS:
        rows = [runs[f"{cond}-s{s}"] for s in seeds if f"{cond}-s{s}" in runs]
        if not rows:
            continue
        table[cond] = {"n_seeds": len(rows)}
        for label in ("cider", "bleu4", "held_out_composition", "seen_composition"):
            table[cond][label] = mean_std([r[label] for r in rows])
        for a in ("colour", "shape", "size", "count", "relation", "position"):
            table[cond][f"acc_{a}"] = mean_std([r["attributes"][a] for r in rows])
    goals = {}
    if "a_human" in table and "b_human+synthetic" in table:
        a, b = table["a_human"], table["b_human+synthetic"]
        goals["b_vs_a_cider_relative_gain"] = b["cider"][0] / max(a["cider"][0], 1e-9) - 1
        goals["b_vs_a_cider_goal_met (>= +17%)"] = goals["b_vs_a_cider_relative_gain"] >= 0.17
        goals["b_over_a_held_out_ratio"] = b["held_out_composition"][0] / max(a["held_out_composition"][0], 1e-9)
        goals["b_over_a_held_out_goal_met (>= 2x)"] = goals["b_over_a_held_out_ratio"] >= 2
    if "a_human" in table and "c_synthetic" in table:
        goals["c_over_a_cider"] = table["c_synthetic"]["cider"][0] / max(table["a_human"]["cider"][0], 1e-9)
        goals["c_over_a_cider_goal_met (>= 0.9)"] = goals["c_over_a_cider"] >= 0.9
    return {"table": table, "goals": goals}


def markdown(summary: dict, results: dict) -> str:
    t = summary["table"]
    lines = ["| training data | CIDEr | BLEU-4 | colour | shape | count | relation | seen comp. | held-out comp. |",
             "|---|---|---|---|---|---|---|---|---|"]
    for cond, row in t.items():
        def f(k, row=row):
            m, s = row[k]
            return f"{m:.3f} ± {s:.3f}"
        lines.append(f"| {CONDITIONS[cond]} | {f('cider')} | {f('bleu4')} | {f('acc_colour')} | {f('acc_shape')} | "
                     f"{f('acc_count')} | {f('acc_relation')} | {f('seen_composition')} | {f('held_out_composition')} |")
    counts = {k: results[f"{k}_pairs"] for k in ("human", "synthetic", "smollm2", "pairs", "pixel")
              if f"{k}_pairs" in results}
    lines += ["", f"Mean ± std over seeds {results['seeds']}, {results['steps']} steps each; pairs per set: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()) + "."]
    extra = [(k, v) for k, v in results["runs"].items() if k.startswith(("curve", "lever"))]
    if extra:
        lines += ["", "| run | CIDEr | BLEU-4 | held-out comp. | seen comp. |", "|---|---|---|---|---|"]
        for k, v in extra:
            lines.append(f"| {k} | {v['cider']:.3f} | {v['bleu4']:.3f} | {v['held_out_composition']:.3f} | "
                         f"{v['seen_composition']:.3f} |")
    return "\n".join(lines)


def plot(summary: dict, results: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    t = summary["table"]
    curve = sorted((v["n_synthetic"], v["cider"]) for k, v in results["runs"].items() if k.startswith("curve"))
    fig, axes = plt.subplots(1, 3 if curve else 2, figsize=(14 if curve else 10, 4))
    conds = list(t)
    labels = [c.split("_", 1)[1].replace("+", "+\n").replace("_", "\n") for c in conds]
    for ax, key, title in ((axes[0], "cider", "CIDEr (balanced test)"),
                           (axes[1], "held_out_composition", "held-out composition accuracy")):
        ax.bar(labels, [t[c][key][0] for c in conds], yerr=[t[c][key][1] for c in conds], capsize=4,
               color=[plt.cm.tab20(i) for i in range(len(conds))])
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=6)
        ax.grid(axis="y", alpha=0.3)
    if curve:
        ax = axes[2]
        ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-", label="synthetic only")
        if "a_human" in t:
            m, s = t["a_human"]["cider"]
            ax.axhline(m, color="#888", ls="--", label=f"human only ({results['human_pairs']} pairs)")
            ax.axhspan(m - s, m + s, color="#888", alpha=0.15)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([c[0] for c in curve])
        ax.set_xlabel("synthetic pairs")
        ax.set_ylabel("CIDEr")
        ax.legend()
        ax.set_title("data efficiency")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "synth2_experiment")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "synth2_experiment")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--share", type=float, default=0.3, help="synthetic share of the (b) mix")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synthetic", type=Path, default=None,
                    help="an existing synthetic shard directory (default: run the demo job on --world)")
    ap.add_argument("--pixel", action="store_true",
                    help="also run the same job through the pixel path (synthesis.space: pixel) and train (b) and (c) "
                         "on its shards, for the embedding-vs-pixel quality comparison")
    ap.add_argument("--pairs", action="store_true",
                    help="also a second synthetic job whose prompts name two concepts (relations), and (b)/(c) with it")
    ap.add_argument("--smollm2", type=int, default=0, metavar="PER_CONCEPT",
                    help="also a synthetic job captioned by SmolLM2-135M-Instruct (configs/demo-smollm2.yaml, this many "
                         "captions per concept), and (b)/(c) with it beside the world LM's set cut to the same size")
    ap.add_argument("--curve", action="store_true", help="also the data-efficiency curve")
    ap.add_argument("--levers", action="store_true", help="also the synthetic share and noise injection")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    world_json = json.loads((args.world / "world.json").read_text())
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    same = (results.get("world_config_hash") in (None, world_json["config_hash"])
            and results.get("steps") in (None, args.steps))
    if not same:
        print("results.json was made with another world or step count: starting over", flush=True)
        results = {"runs": {}}
    synthetic = args.synthetic or synthetic_job(args.world, args.work / "synthetic")
    from contracts.shards import Manifest

    n_syn = Manifest.load(synthetic).samples
    human = args.world / "data" / "train"
    results.update({"world_config_hash": world_json["config_hash"], "steps": args.steps, "batch_size": args.batch_size,
                    "seeds": args.seeds, "share": args.share, "human_pairs": Manifest.load(human).samples,
                    "synthetic_pairs": n_syn, "machine": {"cpus": os.cpu_count(), "threads": args.threads,
                                                         "platform": platform.platform()}})
    h, s = str(human), str(synthetic)
    for seed in args.seeds:
        run_one(f"a_human-s{seed}", [h], args, args.work, results, results_path, seed)
        run_one(f"b_human+synthetic-s{seed}", [f"{h}@{1 - args.share}", f"{s}@{args.share}"], args, args.work,
                results, results_path, seed)
        run_one(f"c_synthetic-s{seed}", [s], args, args.work, results, results_path, seed)
    if args.pixel:
        pixel = synthetic_job(args.world, args.work / "synthetic-pixel", pixel=True)
        px = str(pixel)
        results["pixel_pairs"] = Manifest.load(pixel).samples
        for seed in args.seeds:
            run_one(f"b_pixel_human+synthetic-s{seed}", [f"{h}@{1 - args.share}", f"{px}@{args.share}"], args, args.work,
                    results, results_path, seed)
            run_one(f"c_pixel_synthetic-s{seed}", [px], args, args.work, results, results_path, seed)
    if args.pairs:
        pairs = str(synthetic_job(args.world, args.work / "synthetic-pairs", per_prompt=2))
        results["pairs_pairs"] = Manifest.load(pairs).samples
        half = args.share / 2
        for seed in args.seeds:
            run_one(f"b_pairs_human+synthetic-s{seed}", [f"{h}@{1 - args.share}", f"{s}@{half}", f"{pairs}@{half}"],
                    args, args.work, results, results_path, seed)
            run_one(f"c_pairs_synthetic-s{seed}", [f"{s}@0.5", f"{pairs}@0.5"], args, args.work, results, results_path,
                    seed)
    if args.smollm2:
        llm = synthetic_job(args.world, args.work / "synthetic-smollm2", config="demo-smollm2.yaml",
                            per_concept=args.smollm2)
        n_llm = Manifest.load(llm).samples
        # the world LM's set cut to the LLM's size, so the two caption sources compare at equal synthetic pairs
        matched = subset(synthetic, min(n_llm, n_syn), args.work / f"synthetic-{min(n_llm, n_syn)}")
        results["smollm2_pairs"] = n_llm
        for seed in args.seeds:
            for tag, src in (("smollm2", llm), ("worldlm_matched", matched)):
                run_one(f"b_{tag}_human+synthetic-s{seed}", [f"{h}@{1 - args.share}", f"{src}@{args.share}"], args,
                        args.work, results, results_path, seed)
                run_one(f"c_{tag}_synthetic-s{seed}", [str(src)], args, args.work, results, results_path, seed)
    if args.curve:
        for n in (250, 500, 1000):
            if n < n_syn:
                sub = subset(synthetic, n, args.work / f"synthetic-{n}")
                run_one(f"curve-synthetic-{n}", [str(sub)], args, args.work, results, results_path, args.seeds[0])
                results["runs"][f"curve-synthetic-{n}"]["n_synthetic"] = n
        results["runs"][f"curve-synthetic-{n_syn}"] = {**results["runs"][f"c_synthetic-s{args.seeds[0]}"],
                                                       "n_synthetic": n_syn}
    if args.levers:
        seed = args.seeds[0]
        for share in (0.15, 0.5):
            run_one(f"lever-share{share}", [f"{h}@{1 - share}", f"{s}@{share}"], args, args.work, results, results_path, seed)
        for std in (0.05, 0.15):
            run_one(f"lever-noise{std}-synthetic_only", [s], args, args.work, results, results_path, seed, noise_std=std)
            run_one(f"lever-noise{std}-mix", [f"{h}@{1 - args.share}", f"{s}@{args.share}"], args, args.work, results,
                    results_path, seed, noise_std=std)
    summary = summarise(results, args.seeds)
    results["summary"] = summary
    results_path.write_text(json.dumps(results, indent=1))
    md = markdown(summary, results)
    (args.out / "table.md").write_text(md + "\n")
    plot(summary, results, args.out / "synth2_experiment.png")
    print(md)
    print(json.dumps(summary["goals"], indent=1))


if __name__ == "__main__":
    main()
