"""The world LM's captions next to SmolLM2-135M-Instruct's, on the embedded world's concept bank.

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/smollm2_captions.py --world world [--per-concept 4]

Both caption sets come from the pipeline's own pieces: the requests of configs/demo.yaml (world LM, its
few-shot prompt) and configs/demo-smollm2.yaml (SmolLM2, chat template), the `hf` backend
(generators/captioners.py), the cleaning rules of each spec (generators/cleaning.py), and for each set:

- share the world parser accepts (generators/world/annotate.parse), share naming the prompted concept;
- Vendi score and distinct-1/2/3 (pipeline/metrics.py), on all-MiniLM-L6-v2 embeddings (one encoder for both
  sets, so the scores compare) and on the world CLIP's text tower;
- duplicates removed by the spec's dedup (pipeline/selection.dedup): exact, and near at each encoder's threshold;
- drops and flags by reason, seconds per caption.

Writes bench/results/smollm2_captions.json (with every SmolLM2 completion, raw and cleaned) and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from generators.captioners import make_captioner  # noqa: E402
from generators.cleaning import CleaningRules, clean, count_flags, missing_concepts, rules_for  # noqa: E402
from generators.encoders import Encoder, SentenceEncoder  # noqa: E402
from generators.pretrained import MINILM  # noqa: E402
from generators.world.annotate import parse  # noqa: E402
from pipeline.metrics import distinct_n, vendi_score  # noqa: E402
from pipeline.prompts import build_requests  # noqa: E402
from pipeline.selection import dedup  # noqa: E402
from pipeline.spec import parse_spec  # noqa: E402

OUT = ROOT / "bench" / "results"


def spec_for(config: str, world: Path, per_concept: int, model: str | None = None) -> dict:
    d = yaml.safe_load((ROOT / config).read_text())
    d["captions"]["per_concept"] = per_concept
    if model:
        d["captions"]["model"] = model
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"})
    d["output"]["dir"] = "/tmp/unused"
    return d


def caption_set(d: dict, batch: int) -> dict:
    spec = parse_spec(d)
    reqs = build_requests(spec)
    rules = rules_for(spec.captions)
    t0 = time.time()
    backend = make_captioner(spec.captions)
    load_s = time.time() - t0
    t0 = time.time()
    rows = []
    for i in range(0, len(reqs), batch):
        part = reqs[i:i + batch]
        for r, c in zip(part, backend.complete([r.prompt for r in part], [r.seed for r in part])):
            cl = clean(c.text, c.finished, rules, r.concepts, error=c.error)
            rows.append({"index": r.index, "concepts": list(r.concepts), "raw": c.text, "finished": c.finished,
                         "caption": cl.caption, "drop": cl.drop, "flags": list(cl.flags)})
        print(f"  {len(rows)}/{len(reqs)} captions, {time.time() - t0:.0f} s", flush=True)
    gen_s = time.time() - t0
    del backend
    return {"spec": d, "rows": rows, "load_seconds": round(load_s, 1), "generate_seconds": round(gen_s, 1),
            "seconds_per_caption": round(gen_s / max(len(rows), 1), 3), "rules": rules.__dict__}


def measure(rows: list[dict], minilm: SentenceEncoder, clip: Encoder | None, thresholds: dict[str, float]) -> dict:
    valid = [r for r in rows if r["caption"]]
    texts = [r["caption"] for r in valid]
    out = {"requested": len(rows), "valid": len(valid), "dropped": dict(Counter(r["drop"] for r in rows if r["drop"])),
           "flags": count_flags(",".join(r["flags"]) for r in rows)}
    if not valid:
        return out
    out["parsed_by_world_parser"] = float(np.mean([parse(t) is not None for t in texts]))
    out["names_prompted_concept"] = float(np.mean([not missing_concepts(t, r["concepts"]) for t, r in zip(texts, valid)]))
    # the same share over every request (a dropped caption names nothing)
    out["names_prompted_concept_of_requests"] = out["names_prompted_concept"] * len(valid) / len(rows)
    for n in (1, 2, 3):
        out[f"distinct_{n}"] = distinct_n(texts, n)
    embs = {"minilm": minilm.encode(texts).numpy()}
    if clip is not None:
        embs["world_clip"] = clip.encode_text(texts).pooled.numpy()
    for name, e in embs.items():
        out[f"vendi_{name}"] = vendi_score(e)
        keep, _, reasons = dedup(texts, e, thresholds[name], exact=True)
        out[f"dedup_{name}"] = {"threshold": thresholds[name], "kept": int(keep.sum()),
                                "removed": {k: int(v) for k, v in reasons.items()},
                                "removed_share": float(1 - keep.mean())}
    return out


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("valid_share", "valid / requested"), ("parsed_by_world_parser", "world parser accepts"),
            ("names_prompted_concept", "names prompted concept"), ("distinct_2", "distinct-2"),
            ("vendi_minilm_per_caption", "Vendi (MiniLM) / n")]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    w = 0.38
    for j, (name, m) in enumerate(res["sets"].items()):
        vals = [m.get(k, 0) or 0 for k, _ in keys]
        ax.bar(np.arange(len(keys)) + (j - 0.5) * w, vals, w, label=name)
    ax.set_xticks(np.arange(len(keys)), [lab for _, lab in keys], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("World LM vs SmolLM2-135M-Instruct captions on the world's concept bank", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SETS = {"world-lm": ("world LM", "configs/demo.yaml"), "smollm2": ("SmolLM2-135M-Instruct", "configs/demo-smollm2.yaml")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, default=ROOT / "world")
    ap.add_argument("--per-concept", type=int, default=4, help="captions per concept (48 concepts)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sets", default="world-lm,smollm2", help="which caption sets to (re)generate: " + ", ".join(SETS))
    ap.add_argument("--measure-only", action="store_true", help="re-measure the stored completions (no generation)")
    ap.add_argument("--out", type=Path, default=OUT / "smollm2_captions.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = args.world.resolve()
    have_world = (world / "clip").is_dir()
    minilm = SentenceEncoder(MINILM)
    clip = Encoder(f"local-dir:{world / 'clip'}") if have_world else None
    res = json.loads(args.out.read_text()) if args.out.exists() else {}
    res |= {"world": str(args.world), "machine": "2 shared CPU cores", "threads": args.threads}
    res.setdefault("sets", {})
    res.setdefault("runs", {})
    for key in args.sets.split(","):
        name, config = SETS[key]
        if key == "world-lm" and not have_world:
            print(f"{name}: no world at {world}, skipped", flush=True)
            continue
        d = spec_for(config, world, args.per_concept, model=str(world / "lm") if key == "world-lm" else None)
        if args.measure_only:
            run = res["runs"][name]
        else:
            print(name, flush=True)
            run = caption_set(d, args.batch)
            run |= {"prompt": d["captions"]["prompt"], "sampling": d["captions"]["sampling"], "per_concept": args.per_concept}
        thresholds = {"minilm": 0.95, "world_clip": float(d["scoring"]["near_dup_threshold"])}
        m = measure(run["rows"], minilm, clip, thresholds)
        m["valid_share"] = m["valid"] / max(m["requested"], 1)
        if "vendi_minilm" in m:
            m["vendi_minilm_per_caption"] = m["vendi_minilm"] / m["valid"]
        m |= {k: run[k] for k in ("load_seconds", "generate_seconds", "seconds_per_caption", "per_concept")}
        # the same completions under the strictest rules: what dropping each shape would cost
        strict = CleaningRules(**(run["rules"] | {"off_concept": "drop", "sentences": "drop", "preamble": "drop"}))
        m["strict_rules_valid"] = sum(clean(r["raw"], r["finished"], strict, r["concepts"]).caption is not None
                                      for r in run["rows"])
        res["sets"][name] = m
        res["runs"][name] = {k: v for k, v in run.items() if k != "spec"}
        args.out.write_text(json.dumps(res, indent=1, default=str))
    if res["sets"]:
        plot(res, args.out.with_suffix(".png"))
    print(json.dumps(res["sets"], indent=1, default=str))


if __name__ == "__main__":
    main()
