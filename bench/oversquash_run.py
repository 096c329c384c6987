"""Run the over-squashing / representational-collapse analysis (consumers/oversquash) on the embedded
world's caption LM and on tiny GPT-2 models built here, writing JSON + PNGs into bench/results/oversquash/.

    flock /tmp/synth2-heavy.lock .venv/bin/python bench/oversquash_run.py [--only NAME,...]

Models:
- world-lm: /work/main/world/lm, the world's caption LM (Llama architecture: rotary positions, trained on
  documents of <= ~80 tokens, 192 configured positions). Rotary positions are relative, so it is analysed up to
  --world-max-len tokens, past its training length: the regime where the paper's collapse shows.
- gpt2-tiny-digits-nope: a 2-layer GPT-2 (d=64) with the position table zeroed and frozen (no positional
  encoding), 1024 positions, trained briefly on digit strings.
- gpt2-tiny-count: a 2-layer GPT-2 (d=64, learned absolute positions, 256 positions) trained for
  --count-train-seconds on the counting (`C:111=3`) and last-digit copying (`L:5281=1`) prompts with n <= 48,
  half with a comma every 3 digits: the model whose counting/copying accuracy against length is measured.
Each is saved with save_pretrained and analysed through from_pretrained, like any hub model. The one-layer
synthetic check is computed once and attached to every result.
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
from consumers.oversquash.synthetic import synthetic_check  # noqa: E402
from consumers.oversquash.tiny import build_task_gpt2, build_tiny_gpt2  # noqa: E402

OUT = ROOT / "bench" / "results" / "oversquash"
COUNT_MAX_N = 48
KNOWN = ("world-lm", "gpt2-tiny-digits-nope", "gpt2-tiny-count")
BEHAVIOUR_LENGTHS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 36, 40, 44, 48, 56, 64, 80, 96, 128, 160]


def _rel(path: str) -> str:
    p = Path(path).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)


def headline(summary: dict) -> dict:
    """Per model and family (absolute positions): trend, thresholds and separator ratios at the bf16 collapse n."""
    out = {}
    for name, s in summary.items():
        if not isinstance(s, dict) or "families" not in s:
            continue
        rows = {}
        for fam, per_align in s.get("families", {}).items():
            a = per_align["absolute"]
            row = {"decreasing": a["decreasing"], "f32_quarter_drop": a["f32_trend"]["quarter_drop"],
                   "f32_loglog_slope": a["f32_trend"]["loglog_slope"], "n_max": a["n_last"],
                   "bf16_identical_n": a.get("bfloat16_identical_n"), "fp16_identical_n": a.get("float16_identical_n"),
                   "bf16_identical_n_with_sep": a.get("bfloat16_identical_n_sep")}
            for v, sep in a.get("separators", {}).items():
                row[v] = {"n": sep["n"], "why": sep["why"], "f32_ratio": sep["float32"]["ratio"],
                          "bf16_plain_l2": sep.get("bfloat16", {}).get("plain_l2"),
                          "bf16_sep_l2": sep.get("bfloat16", {}).get("sep_l2"),
                          "bf16_ratio": sep.get("bfloat16", {}).get("ratio"),
                          "f32_ratio_median_from_n": sep["f32_ratio_median_from_n"]}
            rows[fam] = row
        out[name] = {"families": rows, "behaviour": s.get("behaviour")}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nope-train-seconds", type=float, default=45.0)
    ap.add_argument("--count-train-seconds", type=float, default=160.0)
    ap.add_argument("--points", type=int, default=24)
    ap.add_argument("--world-max-len", type=int, default=2048)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--world-lm", default=str(ROOT / "world" / "lm"))
    ap.add_argument("--only", help="Comma-separated model names to run.")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    import torch

    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    want = lambda name: not only or name in only  # noqa: E731
    t0 = time.monotonic()
    synthetic = {"synthetic": synthetic_check(), "synthetic_input_pe": synthetic_check(mode="input")}
    logging.info("synthetic check done in %.0f s", time.monotonic() - t0)
    prev = out / "summary.json"
    summary = {k: v for k, v in json.loads(prev.read_text()).items() if k in KNOWN} if only and prev.exists() else {}

    def build_nope(tmp: Path) -> tuple[str, dict, dict]:
        info = build_tiny_gpt2(tmp / "nope", n_layer=2, n_embd=64, n_head=4, n_positions=1024, train_len=128,
                               train_seconds=args.nope_train_seconds, nope=True, seed=0)
        return info["path"], info, {}

    def build_count(tmp: Path) -> tuple[str, dict, dict]:
        info = build_task_gpt2(tmp / "count", max_n=COUNT_MAX_N, n_positions=256, train_seconds=args.count_train_seconds,
                               seed=0)
        return info["path"], info, {"behaviour_lengths": BEHAVIOUR_LENGTHS, "behaviour_trials": 12,
                                    "behaviour_train_max_n": COUNT_MAX_N}

    builders = {"world-lm": lambda tmp: (args.world_lm, None, {"max_len": args.world_max_len}),
                "gpt2-tiny-count": build_count, "gpt2-tiny-digits-nope": build_nope}
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in builders.items():
            if not want(name):
                continue
            t = time.monotonic()
            path, info, kw = build(Path(tmp))
            if info:
                info["build_seconds"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            res = run_analysis(path, out / name, points=args.points, name=name, synthetic_result=synthetic, **kw)
            secs = round(time.monotonic() - t, 1)
            summary[name] = {"model": name if info else path, "training": info, "analysis_seconds": secs,
                             "max_len_used": res["max_len_used"], "max_positions": res["max_positions"],
                             "position_table": res["position_table"], "model_type": res["model_type"],
                             "files": [_rel(f) for f in res["files"]], **res["summary"]}
            if info:  # the temp path is meaningless after the run
                summary[name]["training"] = {k: v for k, v in info.items() if k != "path"}
            logging.info("%s done in %.0f s", name, secs)
            # written after every model, so a run cut short keeps what it finished
            summary["headline"] = headline(summary)
            summary["machine"] = {"cpu_threads": torch.get_num_threads(), "note": "2 shared CPU cores, loaded by other work"}
            summary["total_seconds"] = round(time.monotonic() - t0, 1)
            prev.write_text(json.dumps(summary, indent=1, default=str))
    print(json.dumps(summary.get("headline"), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
