"""What a synth2 VLM says about the exploration views (issue #19): could its captions stand in for the language
oracle (the world's caption of the view, `caption+episodic`, 2.09x the pixel agent)?

For each VLM (`synth2 vlm train` on WORLD/data/train with WORLD/lm as decoder, `--vlm-steps` steps each, cached
in --work as the exploration bench caches its VLM), the views of the separability diagnostic of
`bench/exploration_acceptance.py` on --layouts layouts: every object of the layout seen from the cell before
it (`approach`), --renders renders each, and the empty views (the wall band alone) at every wall distance.
Each view is captioned greedily from its CLIP image embedding. Reported per VLM:
- on object views: colour, shape and composition hits against the view's world caption (`vlm.evaluate`'s
  `attribute_hits`, as the VLM's own evaluation scores them), and the share of views given the most common
  caption;
- on empty views: how many distinct captions they get, and the share that still name an object;
- as a reference, the same VLM's hits on the world's own test images (`synth2 vlm eval`'s figures), and the
  world CLIP's zero-shot colour and shape on the one-object views (`generators.world.evaluate.clip_zero_shot`).

    .venv/bin/python bench/exploration_vlm_captions.py --world world --vlm-steps 300,1500

Writes bench/results/exploration/vlm-captions.json (every caption, and the summary).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._vlm import rel_path  # noqa: E402
from bench.exploration_acceptance import OUT, _write_json, object_views, train_vlm, views_zero_shot  # noqa: E402


def score(generated: list[str], scenes: list) -> dict:
    from generators.world.annotate import caption, parse
    from vlm.evaluate import attribute_hits

    obj = [(g, s) for g, s in zip(generated, scenes, strict=True) if s is not None]
    empty = [g for g, s in zip(generated, scenes, strict=True) if s is None]
    hits = [attribute_hits(parse(g), s) for g, s in obj]
    common = Counter(g for g, _ in obj).most_common(1)[0]
    return {"object_views": len(obj),
            **{k: round(sum(bool(h[k]) for h in hits) / len(hits), 3) for k in ("colour", "shape", "composition")},
            "most_common_caption": common[0], "most_common_share": round(common[1] / len(obj), 3),
            "distinct_captions_object_views": len({g for g, _ in obj}),
            "empty_views": len(empty), "distinct_captions_empty_views": len(set(empty)),
            "empty_views_naming_an_object": round(sum(parse(g) is not None for g in empty) / len(empty), 3),
            "samples": [{"world": caption(s, 0) if s is not None else "", "vlm": g}
                        for g, s in zip(generated, scenes, strict=True)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "synth2-exploration-bench")
    ap.add_argument("--vlm-steps", default="300", help="comma-separated: one VLM per budget")
    ap.add_argument("--layouts", default="0,1,2")
    ap.add_argument("--renders", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from consumers.exploration.embeddings import ClipImageEmbedding
    from generators.world.concepts import COLOURS, SHAPES
    from vlm.evaluate import evaluate
    from vlm.model import SynthVLM

    torch.set_num_threads(args.threads)
    t0 = time.time()
    image = ClipImageEmbedding(str(args.world / "clip"))
    per_layout = [object_views(int(s), args.renders) for s in args.layouts.split(",")]
    emb = [image(v, [""] * len(v)) for v, _ in per_layout]
    zs = views_zero_shot(args.world / "clip", tuple(int(s) for s in args.layouts.split(",")), args.renders)
    print(f"world CLIP zero-shot on the one-object views: colour {zs['colour']:.3f}, shape {zs['shape']:.3f} "
          f"(n {zs['n']})", flush=True)
    res: dict = {}
    for steps in (int(s) for s in args.vlm_steps.split(",")):
        model = train_vlm(args.world, args.work, steps)
        vlm = SynthVLM.from_pretrained(model).eval()
        gen, scenes = [], []
        for e, (_, sc) in zip(emb, per_layout, strict=True):
            gen += vlm.generate(e)
            scenes += sc
        ref = evaluate(model, str(args.world / "data" / "test"), beams=(1,), batch_size=256,
                       use_images=False)["decoding"]["greedy"]["world"]["attributes"]
        ref = {k: round(ref[k]["accuracy"], 3) for k in ("colour", "shape", "composition")}
        res[f"vlm-{steps}"] = {"world_test_split": ref, **score(gen, scenes)}
        r = res[f"vlm-{steps}"]
        print(f"vlm {steps} steps: views colour {r['colour']} shape {r['shape']} (world test split "
              f"{r['world_test_split']['colour']} / {r['world_test_split']['shape']}); most common caption "
              f"{r['most_common_share']:.0%} '{r['most_common_caption']}'; empty views: "
              f"{r['distinct_captions_empty_views']} distinct captions, {r['empty_views_naming_an_object']:.0%} name "
              f"an object", flush=True)
    out = {"issue": 19, "world": rel_path(args.world), "layouts": args.layouts, "renders": args.renders,
           "clip_zero_shot_object_views": zs, "chance": {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES)},
           "vlms": res, "seconds": round(time.time() - t0, 1),
           "machine": {"cpus": os.cpu_count(), "threads": args.threads, "platform": platform.platform()}}
    OUT.mkdir(parents=True, exist_ok=True)
    _write_json(OUT / "vlm-captions.json", out, args.work)


if __name__ == "__main__":
    main()
