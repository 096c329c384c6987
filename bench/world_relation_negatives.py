"""Does a world CLIP trained with order negatives encode which object stands where? (issue #22)

The held-out-composition figure of the closed loop is bounded by two-object relation scenes
(`bench/loop_kinds.py`): probes of the world CLIP's embedding find both objects in caption order in 8 % of test
relation scenes. This bench rebuilds a world with the settings `--world` recorded, changing one option —
`ClipConfig.relation_negatives`: a relation scene's hard negatives include its caption with the objects swapped
and with the relation on the other axis — and compares both worlds' CLIP zero-shot accuracy, prior retrieval and
relation-scene probes (`generators.world.evaluate.relation_probe`).

    .venv/bin/python bench/world_relation_negatives.py --world world --out-world runs/world-rel

Then the loop on the new world: `bench/loop_experiment.py --world runs/world-rel ...` and `bench/loop_kinds.py`.
Writes bench/results/world_relation_negatives.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._vlm import rel_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=ROOT / "world", help="the built world whose settings are reused")
    ap.add_argument("--out-world", type=Path, default=ROOT / "runs" / "world-rel")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "world_relation_negatives.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from generators.world.build import WorldConfig, build_world
    from generators.world.evaluate import relation_probe

    t0 = time.time()
    base = json.loads((args.world / "world.json").read_text())
    cfg = WorldConfig.from_dict(base["config"])
    if cfg.digest() != base["config_hash"]:
        raise SystemExit(f"{args.world}/world.json: its settings do not reproduce its hash; rebuild it first")
    new = build_world(args.out_world, config=replace(cfg, clip=replace(cfg.clip, relation_negatives=True)))
    worlds = {}
    for name, path, w in (("base", args.world, base), ("relation_negatives", args.out_world, new)):
        worlds[name] = {"world": rel_path(path), "config_hash": w["config_hash"],
                        "clip_zero_shot": w["quality"]["clip_zero_shot"],
                        "prior_retrieval_guidance_2": w["quality"]["prior_retrieval"]["prior_guidance_2"],
                        "relation_probe": relation_probe(path)}
        print(name, json.dumps(worlds[name]["relation_probe"]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "worlds": worlds, "changed": {"clip.relation_negatives": True},
        "build_seconds": new["timings_s"], "seconds": round(time.time() - t0, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}, indent=1))


if __name__ == "__main__":
    main()
