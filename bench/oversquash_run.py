"""Run the over-squashing / representational-collapse analysis (consumers/oversquash) on the embedded
world's caption LM and on tiny GPT-2 models built here, writing JSON + PNGs into bench/results/oversquash/.

    .venv/bin/python bench/oversquash_run.py [--train-seconds 120] [--quick]

Models:
- world-lm: /work/main/world/lm (GPT-2 architecture, byte-level BPE; digits are single tokens).
- gpt2-tiny-digits: a 2-layer GPT-2 (d=64, 128 positions, learned absolute positions) trained for
  --train-seconds on counting (`C:111=3`) and last-digit copying (`L:5281=1`) strings, half with commas.
- gpt2-tiny-digits-nope: the same with the position table zeroed and frozen (no positional encoding) and
  1024 positions (trained on 128-token windows).
Each is saved with save_pretrained and analysed through from_pretrained, like any hub model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from consumers.oversquash.analysis import run_analysis  # noqa: E402
from consumers.oversquash.tiny import build_tiny_gpt2  # noqa: E402

OUT = ROOT / "bench" / "results" / "oversquash"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-seconds", type=float, default=120.0)
    ap.add_argument("--points", type=int, default=36)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--world-lm", default=str(ROOT / "world" / "lm"))
    ap.add_argument("--only", help="Comma-separated model names to run.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        models = {"world-lm": (args.world_lm, None)}
        # the NoPE model has no position table to outgrow: give it 1024 positions (trained on 128-token windows)
        for name, nope, n_pos in (("gpt2-tiny-digits", False, 128), ("gpt2-tiny-digits-nope", True, 1024)):
            if only and name not in only:
                continue
            t0 = time.monotonic()
            info = build_tiny_gpt2(Path(tmp) / name, n_layer=2, n_embd=64, n_head=4, n_positions=n_pos, train_len=128,
                                   train_seconds=args.train_seconds, nope=nope, seed=0)
            info["build_seconds"] = round(time.monotonic() - t0, 1)
            models[name] = (info["path"], info)
        for name, (path, info) in models.items():
            if only and name not in only:
                continue
            t0 = time.monotonic()
            res = run_analysis(path, out / name, points=args.points, name=name)
            secs = round(time.monotonic() - t0, 1)
            summary[name] = {"model": name if info else path, "training": info, "analysis_seconds": secs,
                             "files": [str(Path(f).relative_to(ROOT)) for f in res["files"]], **res["summary"]}
            if info:  # the temp path is meaningless after the run
                summary[name]["training"] = {k: v for k, v in info.items() if k != "path"}
            logging.info("%s done in %.0f s", name, secs)
    prev = out / "summary.json"
    if only and prev.exists():
        summary = {**json.loads(prev.read_text()), **summary}
    prev.write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps({k: v["families"]["ones"] for k, v in summary.items()}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
