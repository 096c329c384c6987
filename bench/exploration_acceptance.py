"""Semantic exploration acceptance (issue #19): distinct objects and rooms visited, and the step the named
object is first reached, for every embedding x novelty pair and a random policy, at equal environment steps.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python bench/exploration_acceptance.py --world world [--steps 40960]

1. clip: `--world W` uses W/clip (a built world; `synth2 world build --size quick` gives zero-shot shape 0.954,
   colour 0.990), its zero-shot figures read from W/world.json. Without `--world`, a small CLIP is trained by
   the world's own trainer (`train_clip`, hard shape negatives) on the quick size's pretrain split with the tiny
   size's architecture and `--clip-steps` steps, cached in the work directory (what the first measurement used).
2. vlm: with `--world` and `--vlm-steps N` (0 skips), a synth2 VLM is finetuned on W/data/train with W/lm as its
   decoder (`synth2 vlm train`, N steps, cached in the work directory); its embedding is the mapper's prefix
   over W/clip's image embedding.
3. separability: for each embedding, the mean distance between two renders of the same view over the mean
   distance between views of different objects (lower: the space ignores the renderer's jitter and sees
   the objects), and the same for views with no object (the wall band alone) at different wall distances.
4. bonus: the episodic bonus along forward-biased random walks, per embedding: its AUC for telling a view
   whose caption is new in the episode from a repeated one, and its mean on new, repeated and empty views.
5. runs: every condition x seed for `--steps` environment steps on `--task` (`--workers` processes, one
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


def retrain_world_clip(world: Path, work: Path, empty_share: float, steps: int | None = None,
                       view_share: float = 0.0) -> tuple[Path, dict]:
    """WORLD's CLIP trained again by the world's own trainer on the world's own pretrain renders, tokenizer and
    recorded CLIP settings, with `empty_share` of the training renders holding no object (`ClipConfig.empty_share`,
    `clip_training_set`): the world build's CLIP step with that one setting changed. With `view_share`, that share
    of the pretrain renders (a seeded choice) is replaced by the same scene drawn as an exploration view
    (`draw_view`: the wall band at a random distance, the view's background), captions unchanged: a CLIP that has
    seen the environment's kind of image, at the same data size and steps. Once into
    WORK/clip-empty<S>[-view<V>][-<steps>]/clip; (that folder's parent, its figures, with its zero-shot colour and
    shape on the exploration views of layouts 0-2, `views_zero_shot`)."""
    from dataclasses import replace

    import numpy as np
    import torch

    from generators.encoders import Encoder
    from generators.world import evaluate
    from generators.world.build import WorldConfig, load_split
    from generators.world.clip import EMPTY_CAPTION, clip_training_set, train_clip
    from generators.world.splits import held_out_compositions

    info = json.loads((world / "world.json").read_text())
    recorded = WorldConfig.from_dict(info["config"]).clip
    ccfg = replace(recorded, empty_share=empty_share, steps=steps or recorded.steps)
    seed = info["seed"]
    folder = work / (f"clip-empty{empty_share:g}" + (f"-view{view_share:g}" if view_share else "")
                     + (f"-{steps}" if steps else ""))
    stats_file = folder / "stats.json"
    settings = {"world_config_hash": info["config_hash"], "clip": ccfg.__dict__ | {"vision_layers": list(ccfg.vision_layers)}}
    if view_share:
        settings["view_share"] = view_share
    if stats_file.exists() and json.loads(stats_file.read_text())["settings"] == settings:
        return folder, json.loads(stats_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    w = world / "_work"
    images, scenes = load_split(w, "pretrain")
    if view_share:
        from consumers.exploration.env import VIEW_DEPTH, draw_view

        rng = np.random.default_rng([seed, 400])
        images = images.copy()
        for i in rng.choice(len(images), round(view_share * len(images)), replace=False):
            images[i] = draw_view(scenes[i], int(rng.integers(1, VIEW_DEPTH + 2)), rng, images.shape[1])
    clip_images, caps, negs = clip_training_set(images, scenes, ccfg, seed)
    torch.set_num_threads(1)
    fit = train_clip(folder / "clip", clip_images, caps, w / "clip-tokenizer", ccfg, seed, negs)
    test_images, test_scenes = load_split(w, "test")
    enc = Encoder(f"local-dir:{folder / 'clip'}")
    emb = torch.cat([enc.encode_images(test_images[i:i + 256]) for i in range(0, len(test_images), 256)])
    zs = evaluate.clip_zero_shot(enc, emb, test_scenes, set(held_out_compositions(seed)))
    stats = {"settings": settings, "world": str(world), "train": fit, "training_images": len(clip_images),
             "empty_images": sum(c == [EMPTY_CAPTION] for c in caps),
             "view_images": round(view_share * len(images)), "zero_shot_test": zs,
             "zero_shot_views": views_zero_shot(folder / "clip")}
    stats_file.write_text(json.dumps(stats, indent=1))
    return folder, stats


def object_views(layout_seed: int, renders: int, n_objects: int | None = None):
    """(views, scenes) of one exploration layout: each object (the first N_OBJECTS) seen from the cell before it
    (`approach`), RENDERS renders each, then the empty views at every wall distance (scene None)."""
    import numpy as np

    from consumers.exploration.env import VIEW_DEPTH, RoomsEnv, approach, draw_view, view_scene, wall_distance

    env = RoomsEnv(layout_seed=layout_seed)
    env.reset(seed=layout_seed)
    lay, rng = env.layout, np.random.default_rng(layout_seed)
    out, scenes = [], []
    for cell in sorted(lay.objects)[:n_objects]:
        pos, d = approach(lay, cell)
        scene = view_scene(lay, pos, d)
        for _ in range(renders):
            out.append(draw_view(scene, wall_distance(lay, pos, d), rng, 64))
            scenes.append(scene)
    for wall in range(1, VIEW_DEPTH + 2):
        for _ in range(renders):
            out.append(draw_view(None, wall, rng, 64))
            scenes.append(None)
    return np.stack(out), scenes


def views_zero_shot(clip: Path, layouts: tuple[int, ...] = (0, 1, 2), renders: int = 3) -> dict:
    """A CLIP's zero-shot colour and shape (`clip_zero_shot`) on the one-object exploration views of LAYOUTS
    (chance 1/8 and 1/6): does it recognise what the agent sees?"""
    import torch

    from consumers.exploration.embeddings import ClipImageEmbedding
    from generators.encoders import Encoder
    from generators.world.evaluate import clip_zero_shot

    image = ClipImageEmbedding(str(clip))
    emb, scenes = [], []
    for seed in layouts:
        v, sc = object_views(seed, renders)
        keep = [i for i, s in enumerate(sc) if s is not None]
        emb.append(image(v[keep], [""] * len(keep)))
        scenes += [sc[i] for i in keep]
    return clip_zero_shot(Encoder(f"local-dir:{clip}"), torch.cat(emb), scenes, set())["all"]


def separability(clip: Path, kinds: list[str], vlm: str | None = None, seed: int = 0, n_objects: int = 12,
                 renders: int = 4) -> dict:
    """Per embedding, over the mean distance between views of different objects (one layout's): the mean
    distance between renders of the same object view (`same_object`), between renders of the same empty view
    (`same_empty`) and between empty views at different wall distances (`empty_walls`)."""
    import numpy as np
    import torch

    from consumers.exploration.embeddings import make_embedding
    from generators.world.annotate import caption

    views, scenes = object_views(seed, renders, n_objects)
    caps = [caption(sc, 0) if sc is not None else "" for sc in scenes]
    n_obj = sum(sc is not None for sc in scenes)
    ids = [i // renders for i in range(n_obj)] + [-1 - i // renders for i in range(len(scenes) - n_obj)]
    ids = np.asarray(ids)
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(len(ids), dtype=bool)
    obj = ids >= 0
    oo, ee = obj[:, None] & obj[None, :], ~obj[:, None] & ~obj[None, :]
    out = {}
    for kind in kinds:
        e = make_embedding(kind, clip=str(clip), vlm=vlm, seed=seed)(views, caps)
        dist = torch.cdist(e.float(), e.float()).numpy()
        ref = dist[~same & oo].mean()
        out[kind] = {"same_object": round(float(dist[same & off & oo].mean() / ref), 4),
                     "same_empty": round(float(dist[same & off & ee].mean() / ref), 4),
                     "empty_walls": round(float(dist[~same & ee].mean() / ref), 4)}
    return out


def _auc(pos: list[float], neg: list[float]) -> float:
    import numpy as np

    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bonus_discrimination(clip: Path, kinds: list[str], vlm: str | None = None, walks: int = 6,
                         steps: int = 200) -> dict:
    """The episodic bonus along forward-biased random walks (forward 0.6, each turn 0.2) on 3 layouts, per
    embedding: AUC of the bonus for a view whose caption is new in the episode against one whose caption was
    seen before in it, and the mean bonus (over the median of all) on new, repeated and empty views."""
    import numpy as np

    from consumers.exploration.embeddings import make_embedding
    from consumers.exploration.env import RoomsEnv
    from consumers.exploration.intrinsic import EpisodicNovelty

    trajs = []
    for w in range(walks):
        env = RoomsEnv(layout_seed=w % 3)
        obs, info = env.reset(seed=w)
        rng = np.random.default_rng(w)
        views, caps = [obs], [info["caption"]]
        for _ in range(steps):
            obs, _, _, _, info = env.step(int(rng.choice(3, p=[0.6, 0.2, 0.2])))
            views.append(obs)
            caps.append(info["caption"])
        trajs.append((np.stack(views), caps))
    out = {}
    for kind in kinds:
        embed = make_embedding(kind, clip=str(clip), vlm=vlm, seed=0)
        nov = EpisodicNovelty(1)
        groups: dict[str, list[float]] = {"new": [], "repeated": [], "empty": []}
        for views, caps in trajs:
            e = embed(views, caps)
            nov.reset(0, e[0])
            seen = {caps[0]}
            for t in range(1, len(caps)):
                b = float(nov.bonus(e[t:t + 1], [0])[0])
                groups["empty" if not caps[t] else "repeated" if caps[t] in seen else "new"].append(b)
                seen.add(caps[t])
        med = float(np.median(sum(groups.values(), [])))
        out[kind] = {"auc_new_vs_repeated": round(_auc(groups["new"], groups["repeated"]), 3),
                     **{f"mean_{k}_over_median": round(float(np.mean(v)) / med, 3) for k, v in groups.items()},
                     "counts": {k: len(v) for k, v in groups.items()}}
    return out


def world_clip(world: Path) -> dict:
    """The figures `synth2 world build` recorded for WORLD's CLIP."""
    info = json.loads((world / "world.json").read_text())
    return {"path": str(world / "clip"), "size": info.get("size"), "config_hash": info.get("config_hash"),
            "config": info.get("config", {}).get("clip"),
            "zero_shot_test": info.get("quality", {}).get("clip_zero_shot")}


def train_vlm(world: Path, work: Path, steps: int) -> Path:
    """A synth2 VLM on WORLD/data/train with WORLD/lm as decoder (`synth2 vlm train`), once into WORK/vlm-<steps>."""
    import subprocess

    out = work / f"vlm-{steps}"
    if not (out / "model" / "vlm_config.json").exists():
        cli = Path(sys.executable).parent / "synth2"
        subprocess.run([str(cli), "vlm", "train", "--data", str(world / "data" / "train"), "--decoder",
                        str(world / "lm"), "--out", str(out), "--steps", str(steps), "--threads", "1", "--force"],
                       check=True, cwd=ROOT)
    return out / "model"


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
    _write_json(OUT / "runs" / f"{job['name']}-{r['condition']}-seed{job['seed']}.json", r, Path(job["work"]), None)
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
        m = [summary[n][key]["mean"] or 0.0 for n in names]  # None: no episode ended (a smoke run)
        s = [summary[n][key]["std"] or 0.0 for n in names]
        colours = ["tab:green" if n.startswith(("clip", "caption", "vlm")) else "grey" if n == "random" else
                   "tab:orange" for n in names]
        ax.bar(range(len(names)), m, yerr=s, color=colours, capsize=3)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
    fig.suptitle(f"task {task}: mean ± std over seeds (last quarter of training)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_json(path: Path, data: dict, work: Path, indent: int | None = 1) -> None:
    """DATA as JSON with the work directory written $WORK: no machine's absolute path in the results."""
    path.write_text(json.dumps(data, indent=indent).replace(str(work), "$WORK"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/synth2-exploration-bench")
    ap.add_argument("--world", default=None, help="A built world (relative to the repo root): its clip/, and for "
                                                  "the vlm its data/train and lm/. Default: train a small CLIP.")
    ap.add_argument("--vlm-steps", type=int, default=300, help="With --world: finetune a VLM this long (0: no vlm).")
    ap.add_argument("--clip-steps", type=int, default=300)
    ap.add_argument("--clip-batch", type=int, default=96)
    ap.add_argument("--task", choices=("explore", "reach"), default="explore")
    ap.add_argument("--steps", type=int, default=40960, help="environment steps per run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--embeddings", default="clip,vlm,caption,pixels,random_conv")
    ap.add_argument("--novelties", default="episodic,rnd")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tag", default="", help="Suffix of the result names (a second budget beside the first).")
    ap.add_argument("--clip-only", action="store_true", help="Train (or check) the CLIP and stop.")
    ap.add_argument("--empty-share", type=float, default=None,
                    help="With --world: the world's CLIP trained again with this share of object-less renders "
                         "(ClipConfig.empty_share), every other setting and the data the world's; used for clip and "
                         "caption (no vlm).")
    ap.add_argument("--view-share", type=float, default=None,
                    help="With --world: the world's CLIP trained again with this share of its pretrain scenes drawn "
                         "as exploration views (wall band and all; retrain_world_clip), with --empty-share if given "
                         "(else 0); used for clip and caption (no vlm).")
    ap.add_argument("--diagnose-only", action="store_true", help="Write the separability and bonus diagnostics "
                                                                 "(diagnostics-<tag>.json) and stop.")
    args = ap.parse_args()
    import logging

    from consumers.exploration.job import ExploreParams

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    work = Path(args.work)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    embeddings = args.embeddings.split(",")
    vlm = None
    if args.world and (args.empty_share is not None or args.view_share):
        clip, clip_stats = retrain_world_clip(Path(args.world), work, args.empty_share or 0.0,
                                              view_share=args.view_share or 0.0)
        clip_stats = {"path": f"$WORK/{clip.name}/clip", **clip_stats}
        print(f"clip: {args.world}'s CLIP trained again with empty_share {args.empty_share or 0}, view_share "
              f"{args.view_share or 0}: zero-shot {clip_stats['zero_shot_test']['all']}, on exploration views "
              f"{clip_stats['zero_shot_views']} ({clip_stats['train']['seconds']:.0f} s)", flush=True)
    elif args.world:
        clip = Path(args.world)
        clip_stats = world_clip(clip) | {"zero_shot_views": views_zero_shot(clip / "clip")}
        print(f"clip: {clip}/clip, zero-shot {(clip_stats['zero_shot_test'] or {}).get('all')}", flush=True)
        if "vlm" in embeddings and args.vlm_steps > 0:
            vlm = str(train_vlm(clip, work, args.vlm_steps))
    else:
        clip, clip_stats = train_world_clip(work, args.clip_steps, args.clip_batch)
        print(f"clip: zero-shot test colour {clip_stats['zero_shot_test']['all']['colour']:.3f}, shape "
              f"{clip_stats['zero_shot_test']['all']['shape']:.3f} ({clip_stats['train']['seconds']:.0f} s)", flush=True)
        clip_stats = {"path": "$WORK/clip", **clip_stats}
    if args.clip_only:
        return
    if vlm is None and "vlm" in embeddings:
        embeddings.remove("vlm")
        print("no VLM (needs --world and --vlm-steps > 0): the vlm embedding is left out", flush=True)
    t = time.time()
    sep = separability(clip, embeddings, vlm)
    print(f"separability (over the different-object distance): {sep}", flush=True)
    disc = bonus_discrimination(clip, embeddings, vlm)
    print(f"episodic bonus discrimination: {disc}", flush=True)
    diag_seconds = time.time() - t
    name = args.task + (f"-{args.tag}" if args.tag else "")
    if args.diagnose_only:
        diag = {"issue": 19, "clip": clip_stats, "separability": sep, "bonus_discrimination": disc,
                "diagnostics_seconds": round(diag_seconds, 1), "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
        _write_json(OUT / f"diagnostics-{args.tag or 'world'}.json", diag, work)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    base = {"task": args.task, "world": str(clip), "vlm": vlm, "steps": args.steps, "seeds": seeds}
    params = ExploreParams(**base)
    common = {"params": base, "name": name, "work": str(work)}
    jobs = [common | {"embedding": e, "novelty": n, "seed": s}
            for e in embeddings for n in args.novelties.split(",") for s in seeds]
    jobs += [common | {"embedding": None, "novelty": None, "seed": s} for s in seeds]
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
    goal: dict[str, dict] = {}
    for key in ("objects_per_episode", "distinct_objects"):
        goal[key] = {}
        for vl in ("clip", "vlm", "caption"):
            for nov in args.novelties.split(","):
                a = summary.get(f"{vl}+{nov}", {}).get(key, {}).get("mean")
                b = summary.get(f"pixels+{nov}", {}).get(key, {}).get("mean")
                if a is not None and b:
                    goal[key][f"{vl}+{nov} / pixels+{nov}"] = round(a / b, 3)
    cfg = params.model_dump(include={"episode_steps", "n_envs", "rollout", "epochs", "lr", "entropy", "beta",
                                     "frames", "rooms", "room_size", "objects_per_room", "image_size"})
    res = {"issue": 19, "task": args.task, "machine": f"{os.cpu_count()} shared CPU cores, {platform.platform()}",
           "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
           "budget": {"steps_per_run": args.steps, "seeds": seeds, "workers": args.workers, **cfg},
           "clip": clip_stats,
           "vlm": None if vlm is None else {"steps": args.vlm_steps, "path": f"$WORK/vlm-{args.vlm_steps}/model",
                                            "data": f"{clip}/data/train", "decoder": f"{clip}/lm"},
           "separability": sep, "bonus_discrimination": disc, "diagnostics_seconds": round(diag_seconds, 1),
           "summary": summary, "goal_ratio": goal,
           "goal": "vision-language (clip, vlm) novelty >= 1.5x the pixel baseline's distinct objects visited",
           "runs_seconds": round(runs_seconds, 1), "total_seconds": round(time.time() - t0, 1),
           "runs": [{k: v for k, v in r.items() if k not in ("coverage", "grid", "curve")} for r in runs]}
    _write_json(OUT / f"acceptance-{name}.json", res, work)
    print(table(summary))
    print(f"goal ratios: {goal}")


if __name__ == "__main__":
    main()
