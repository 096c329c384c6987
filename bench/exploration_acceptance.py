"""Semantic exploration acceptance (issue #19): distinct objects and rooms visited, and the step the named
object is first reached, for every embedding x novelty pair and a random policy, at equal environment steps.

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/exploration_acceptance.py [--steps 8192]

1. clip: the world CLIP, trained by the world's own trainer (generators/world/clip.py `train_clip`, hard shape
   negatives) on the world's pretrain split rendered at 64 px (the quick size's 4,800 scenes), with the tiny
   size's architecture and `--clip-steps` steps: the quick world's CLIP (600 steps x 128 at width 128) did not
   fit this machine's shared CPU (7 s a step). Cached in the work directory; its zero-shot colour and shape
   accuracy on the world's test split is recorded.
2. separability: for each embedding, the mean distance between two renders of the same view over the mean
   distance between views of different objects (lower: the space ignores the renderer's jitter and sees
   the objects).
3. runs: every condition x seed for `--steps` environment steps on `--task` (`--workers` processes, one
   torch thread each); each run's metrics go to runs/<task>-<condition>-seed<N>.json as it ends.

Writes bench/results/exploration/{acceptance-<task>.json, coverage-<task>-seed<N>.png, objects-<task>.png, runs/}
(`--tag T`: <task>-T in every name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "exploration"


def train_world_clip(work: Path, steps: int, batch_size: int, seed: int = 0) -> tuple[Path, dict]:
    """The world CLIP (module docstring) in WORK/clip, trained once; (folder, its figures)."""
    import numpy as np
    import torch

    from generators.encoders import Encoder
    from generators.world import evaluate
    from generators.world.annotate import captions
    from generators.world.build import preset, render_split
    from generators.world.clip import ClipConfig, shape_swapped, train_clip
    from generators.world.lm import corpus_documents
    from generators.world.splits import held_out_compositions
    from generators.world.tokenizer import EOS, save_clip_tokenizer, train_bpe

    clip_dir, stats_file = work / "clip", work / "clip-stats.json"
    cfg = preset("quick", seed, 64)
    ccfg = ClipConfig(image_size=64, vision_width=8, text_width=64, embed_dim=32, steps=steps, batch_size=batch_size,
                      lr=3e-3, shape_negatives=True)
    settings = {"clip": ccfg.__dict__ | {"vision_layers": list(ccfg.vision_layers)}, "pretrain": cfg.split_sizes["pretrain"],
                "test": cfg.split_sizes["test"], "seed": seed}
    if stats_file.exists() and json.loads(stats_file.read_text())["settings"] == settings:
        return clip_dir, json.loads(stats_file.read_text())
    work.mkdir(parents=True, exist_ok=True)
    t = time.time()
    images, scenes = render_split("pretrain", cfg.split_sizes["pretrain"], cfg)
    docs = corpus_documents(cfg.lm.docs, seed, EOS)
    bpe = train_bpe(docs + [c for s in scenes for c in captions(s)])
    save_clip_tokenizer(bpe, work / "clip-tokenizer", ccfg.context_length)
    prep = time.time() - t
    torch.set_num_threads(1)
    fit = train_clip(clip_dir, images, [captions(s) for s in scenes], work / "clip-tokenizer", ccfg, seed,
                     negatives=[shape_swapped(s) for s in scenes])
    test_images, test_scenes = render_split("test", cfg.split_sizes["test"], cfg)
    enc = Encoder(f"local-dir:{clip_dir}")
    emb = torch.cat([enc.encode_images(test_images[i:i + 256]) for i in range(0, len(test_images), 256)])
    zs = evaluate.clip_zero_shot(enc, emb, test_scenes, set(held_out_compositions(seed)))
    stats = {"settings": settings, "train": fit, "prepare_seconds": round(prep, 1), "zero_shot_test": zs}
    stats_file.write_text(json.dumps(stats, indent=1))
    del np
    return clip_dir, stats


def separability(clip: Path, seed: int = 0, n_objects: int = 12, renders: int = 4) -> dict:
    """Same-view distance over different-object distance, per embedding, on views of one layout's objects."""
    import numpy as np
    import torch

    from consumers.exploration.embeddings import make_embedding
    from consumers.exploration.env import RoomsEnv, approach, draw_view, view_scene, wall_distance
    from generators.world.annotate import caption

    env = RoomsEnv(layout_seed=seed)
    env.reset(seed=seed)
    lay, rng = env.layout, np.random.default_rng(seed)
    views, caps, ids = [], [], []
    for k, cell in enumerate(sorted(lay.objects)[:n_objects]):
        pos, d = approach(lay, cell)
        scene = view_scene(lay, pos, d)
        for _ in range(renders):
            views.append(draw_view(scene, wall_distance(lay, pos, d), rng, 64))
            caps.append(caption(scene, 0))
            ids.append(k)
    views, ids = np.stack(views), np.asarray(ids)
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(len(ids), dtype=bool)
    out = {}
    for kind in ("clip", "caption", "pixels", "random_conv"):
        e = make_embedding(kind, clip=str(clip), seed=seed)(views, caps)
        dist = torch.cdist(e.float(), e.float()).numpy()
        out[kind] = round(float(dist[same & off].mean() / dist[~same].mean()), 4)
    return out


def one_run(job: dict) -> dict:
    """A worker process: one condition and seed."""
    import torch

    torch.set_num_threads(1)
    from consumers.exploration.job import ExploreParams
    from consumers.exploration.train import train_condition

    p = ExploreParams(**job["params"])
    t = time.time()
    r = train_condition(p, job["embedding"], job["novelty"], job["seed"])
    r["wall_seconds"] = round(time.time() - t, 1)
    (OUT / "runs").mkdir(parents=True, exist_ok=True)
    (OUT / "runs" / f"{job['name']}-{r['condition']}-seed{job['seed']}.json").write_text(json.dumps(r))
    print(f"{job['name']} {r['condition']} seed {job['seed']} ({r['wall_seconds']} s): {r['objects_per_episode']} "
          f"objects/episode, {r['distinct_objects']} distinct, first target visit at step {r['first_solved_step']}",
          flush=True)
    return r


def plot_objects(summary: dict, task: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, label in ((axes[0], "objects_per_episode", "distinct objects visited per episode"),
                           (axes[1], "rooms_per_episode", "distinct rooms entered per episode")):
        m = [summary[n][key]["mean"] for n in names]
        s = [summary[n][key]["std"] for n in names]
        colours = ["tab:green" if n.startswith(("clip", "caption", "vlm")) else "grey" if n == "random" else
                   "tab:orange" for n in names]
        ax.bar(range(len(names)), m, yerr=s, color=colours, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
    fig.suptitle(f"task {task}: mean ± std over seeds (last quarter of training)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/synth2-exploration-bench")
    ap.add_argument("--clip-steps", type=int, default=300)
    ap.add_argument("--clip-batch", type=int, default=96)
    ap.add_argument("--task", choices=("explore", "reach"), default="explore")
    ap.add_argument("--steps", type=int, default=8192, help="environment steps per run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--embeddings", default="clip,caption,pixels,random_conv")
    ap.add_argument("--novelties", default="episodic,rnd")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tag", default="", help="Suffix of the result names (a second budget beside the first).")
    ap.add_argument("--clip-only", action="store_true", help="Train (or check) the CLIP and stop.")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    work = Path(args.work)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    clip, clip_stats = train_world_clip(work, args.clip_steps, args.clip_batch)
    print(f"clip: zero-shot test colour {clip_stats['zero_shot_test']['all']['colour']:.3f}, shape "
          f"{clip_stats['zero_shot_test']['all']['shape']:.3f} ({clip_stats['train']['seconds']:.0f} s)", flush=True)
    if args.clip_only:
        return
    sep = separability(clip)
    print(f"separability (same-view / different-object distance): {sep}", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    base = {"task": args.task, "clip": str(clip), "steps": args.steps, "seeds": seeds}
    name = args.task + (f"-{args.tag}" if args.tag else "")
    jobs = [{"params": base, "embedding": e, "novelty": n, "seed": s, "name": name}
            for e in args.embeddings.split(",") for n in args.novelties.split(",") for s in seeds]
    jobs += [{"params": base, "embedding": None, "novelty": None, "seed": s, "name": name} for s in seeds]
    t = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(one_run, jobs))
    runs_seconds = time.time() - t
    from consumers.exploration.train import plot_coverage, summarise
    from synth2.cli_explore import table

    summary = summarise(runs)
    for s in seeds:
        plot_coverage(runs, OUT / f"coverage-{name}-seed{s}.png", seed=s)
    plot_objects(summary, name, OUT / f"objects-{name}.png")
    pix = summary.get("pixels+episodic", {}).get("objects_per_episode", {}).get("mean")
    goal = {}
    for vl in ("clip+episodic", "clip+rnd", "caption+episodic", "caption+rnd"):
        for px in ("pixels+episodic", "pixels+rnd"):
            a, b = (summary.get(n, {}).get("objects_per_episode", {}).get("mean") for n in (vl, px))
            if a is not None and b:
                goal[f"{vl} / {px}"] = round(a / b, 3)
    res = {"issue": 19, "task": args.task, "machine": f"{os.cpu_count()} shared CPU cores, {platform.platform()}",
           "budget": {"steps_per_run": args.steps, "seeds": seeds, "workers": args.workers, "episode_steps": 200,
                      "n_envs": 8, "rollout": 64, "ppo_epochs": 3, "clip_steps": args.clip_steps,
                      "clip_batch": args.clip_batch},
           "clip": {"path": "$WORK/clip", **{k: v for k, v in clip_stats.items() if k != "settings"},
                    "settings": clip_stats["settings"]},
           "separability": sep, "summary": summary, "goal_ratio_objects_per_episode": goal,
           "goal": "clip (vision-language) novelty >= 1.5x the pixel baseline's distinct objects visited per episode",
           "pixel_baseline_objects_per_episode": pix, "runs_seconds": round(runs_seconds, 1),
           "total_seconds": round(time.time() - t0, 1),
           "runs": [{k: v for k, v in r.items() if k not in ("coverage", "grid", "curve")} for r in runs]}
    (OUT / f"acceptance-{name}.json").write_text(json.dumps(res, indent=1))
    print(table(summary))
    print(f"goal ratios: {goal}")


if __name__ == "__main__":
    main()
