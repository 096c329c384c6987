"""The world's CLIP alone on the quick world's pretrain split: zero-shot colour/shape on its test split.

    .venv/bin/python bench/world_clip_sweep.py '{"batch_size": 128, "steps": 400, "shape_negatives": true}' NAME

Settings are ClipConfig overrides of the quick preset's CLIP (plus `pretrain`: the pretrain split's size);
each run appends one row to bench/results/world_clip_sweep.json (`runs`) with wall and CPU seconds, the
load average over the run, and zero-shot shape on 960 of its own training images (`shape_train`: over- or
under-fitting). Rendered splits and the tokenizer are cached in $SWEEP_CACHE; $SWEEP_THREADS torch threads (1).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from generators.encoders import Encoder
    from generators.world import evaluate
    from generators.world.annotate import captions
    from generators.world.build import preset, render_split
    from generators.world.clip import mirrored, shape_swapped, train_clip
    from generators.world.concepts import Scene
    from generators.world.lm import corpus_documents
    from generators.world.splits import held_out_compositions
    from generators.world.tokenizer import EOS, save_clip_tokenizer, train_bpe

    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "1")))
    overrides, name = json.loads(sys.argv[1]), sys.argv[2]
    settings = dict(overrides)
    n_pre = settings.pop("pretrain", None)
    hflip = settings.pop("hflip", False) or settings.get("mirror", False)
    root = Path(os.environ.get("SWEEP_CACHE", "/tmp/world/cache"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = preset("quick")

    def get(split: str, n: int):
        p = root / f"{split}-{n}.npz"
        if not p.exists():
            im, sc = render_split(split, n, cfg)
            np.savez(p, im=im)
            (root / f"{split}-{n}.json").write_text(json.dumps([s.to_dict() for s in sc]))
        return np.load(p)["im"], [Scene.from_dict(d) for d in json.loads((root / f"{split}-{n}.json").read_text())]

    pim, psc = get("pretrain", n_pre or cfg.split_sizes["pretrain"])
    tim, tsc = get("test", cfg.split_sizes["test"])
    tokdir = root / "clip-tokenizer"
    if not tokdir.exists():
        docs = corpus_documents(cfg.lm.docs, 0, EOS)
        save_clip_tokenizer(train_bpe(docs + [c for s in psc for c in captions(s)]), tokdir, cfg.clip.context_length)
    c = type(cfg.clip)(**{**asdict(cfg.clip), **settings})
    t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    if hflip:  # the split and its mirror image
        pim, psc = np.concatenate([pim, pim[:, :, ::-1]]), psc + [mirrored(s) for s in psc]
    neg = [shape_swapped(s) for s in psc] if c.shape_negatives else None
    st = train_clip(root / f"clip-{name}", pim, [captions(s) for s in psc], tokdir, c, 0, negatives=neg)
    wall, cpu = time.time() - t0, time.process_time() - c0
    enc = Encoder(f"local-dir:{root / f'clip-{name}'}")
    emb = torch.cat([enc.encode_images(tim[i:i + 512]) for i in range(0, len(tim), 512)])
    load = (load0 + os.getloadavg()[0]) / 2
    protos = evaluate.composition_prototypes(enc)
    zs = evaluate.clip_zero_shot(enc, emb, tsc, set(held_out_compositions(0)), protos)
    ztr = evaluate.clip_zero_shot(enc, torch.cat([enc.encode_images(pim[i:i + 480]) for i in (0, 480)]), psc[:960],
                                  set(held_out_compositions(0)), protos)
    row = {"name": name, "overrides": overrides, "threads": torch.get_num_threads(), "wall": wall, "cpu": cpu,
           "load": round(load, 2), "loss": st["final_loss"], "params": st["parameters"], "shape": zs["all"]["shape"],
           "shape_seen": zs["seen"]["shape"], "shape_held": zs["held_out"]["shape"], "colour": zs["all"]["colour"],
           "colour_seen": zs["seen"]["colour"], "colour_held": zs["held_out"]["colour"],
           "shape_train": ztr["all"]["shape"]}
    print(json.dumps(row))
    path = ROOT / "bench" / "results" / "world_clip_sweep.json"
    res = json.loads(path.read_text()) if path.exists() else {"runs": []}
    res["runs"].append(row)
    path.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
