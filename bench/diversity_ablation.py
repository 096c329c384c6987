"""The diversity / balance ablation on the embedded world (Synth² §4): caption sets that differ only
in diversity, and caption sets that differ only in balance, each run as a real job and measured
with `pipeline.metrics` on both the generated captions and the selected (deduplicated, balanced)
ones that end up in shards.

    .venv/bin/python bench/diversity_ablation.py [--world world] [--per-concept 40] [--seeds 0 1 2] [--vlm-steps 300]

Arms (everything not named is the base arm, `configs/demo.yaml` cut down to --per-concept and
--steps, with cap = round(--cap-ratio x per_concept), the demo's 40-of-100):

  diversity (balancing held at the base's `cap`, uniform concept sampling):
    temperature   captions.sampling.temperature in --temperatures (top_p 0.95 fixed)
    few-shot      shots_per_prompt 0; 1 from one repeated example; 1 of the demo's 3 (= base);
                  3 of the demo's 3 (shuffled); 1 of a wider pool of 8
  balance (sampling held at the base's):
    uniform       scoring.balance none / cap (= base) / target (uniform shares)
    skewed        concepts.weights Zipf(--zipf) over the 48 compositions, balance none / cap / target

Every arm runs with `pipeline.run.run_spec(spec, local=True)` (no Ray) in a fresh job directory
under --out (default: a temp dir), once per seed in --seeds (captions.sampling.seed and
synthesis.seed; balancing is seeded by the caption seed). Per arm it records the knobs, the counts
(requested / valid / after dedup / after balance), the metrics of the generated and the selected
set (stats.json `metrics`), size-matched Vendi and distinct-2 (both sets subsampled to
--matched-n, so set size does not move them), and the wall time. Figures across seeds are
mean ± half-range (max-min)/2.

Downstream VLM score (`--vlm-steps N`, default 300; 0 skips it): right after each arm's job, while its
job directory exists, the VLM (`vlm.train`, from the world's LM) is trained from scratch for N steps
(batch --vlm-batch-size) on human + that arm's synthetic pairs, mixed by weight as in
bench/synth2_experiment.py (`[f"{human}@{1-share}", f"{syn}@{share}"]`, --vlm-share 0.3; human = the
world's data/train split, synthetic = the arm's shards), with the arm's seed, and evaluated greedily on
the world's balanced test split (`bench._vlm.train_and_score`, the call synth2_experiment uses):
CIDEr, BLEU-4, held-out- and seen-composition accuracy, shape and colour accuracy. A "human only"
reference (the human split alone, same steps and seeds) is trained once per seed. VLM figures are
mean ± std over seeds; `vlm.significant` compares every arm with the base arm and with human only on
each VLM metric and marks a difference significant when |Δmean| > std_a + std_b (in the table: * vs base).

Budget: with the defaults (12 arms x 3 seeds, per_concept 40, VLM 300 steps x batch 64, 1 torch thread)
the run on the quick world took 1,787 s, 1,309 s of it VLM training and scoring, on 2 cores shared with 3-4
other jobs. `seconds`, `vlm.seconds` and every run's `wall_s` / `vlm.train_seconds` / `vlm.eval_seconds`
record what it took.

Writes bench/results/diversity_ablation.json and bench/results/diversity_ablation.png and prints a
markdown table of the key metrics (caption metrics, then the VLM columns). `--replot JSON` redraws
the plot and table from a results file.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._vlm import train_and_score  # noqa: E402
from contracts.shards import Manifest  # noqa: E402
from contracts.storage import Store  # noqa: E402
from pipeline.metrics import distinct_n, vendi_score  # noqa: E402
from pipeline.prompts import build_requests  # noqa: E402
from pipeline.run import run_spec  # noqa: E402
from pipeline.selection import match_concepts  # noqa: E402
from pipeline.spec import parse_spec  # noqa: E402

METRICS = ["n", "vendi", "vendi_per_caption", "distinct_1", "distinct_2", "distinct_3", "cluster_entropy", "coverage",
           "concept_entropy", "concept_gini", "exact_duplicate_rate", "near_duplicate_rate", "prior_alignment_mean"]
COUNTS = ["requested", "valid", "after_dedup", "after_balance"]

# A wider few-shot pool than the demo's three, in the styles of the world's corpus.
WIDE_POOL = [
    {"concepts": ["blue circle"], "caption": "a small blue circle in the top left corner"},
    {"concepts": ["red star", "green square"], "caption": "a red star above a green square"},
    {"concepts": ["yellow hexagon"], "caption": "three large yellow hexagons"},
    {"concepts": ["purple diamond"], "caption": "the image shows a medium purple diamond on the right"},
    {"concepts": ["orange triangle"], "caption": "there is a large orange triangle at the bottom"},
    {"concepts": ["cyan square", "pink circle"], "caption": "to the left of a pink circle there is a cyan square"},
    {"concepts": ["green star"], "caption": "a group of two small green stars"},
    {"concepts": ["pink hexagon"], "caption": "a pink hexagon of small size in the center"},
]

# The VLM figures recorded per run (paths into the `vlm` record) and their table / plot labels.
VLM_METRICS = [("cider", "VLM CIDEr"), ("held_out_composition", "held-out comp."),
               ("seen_composition", "seen comp."), ("attributes.shape", "shape acc."), ("attributes.colour", "colour acc.")]


# ---------------------------------------------------------------- arms


@dataclass
class Arm:
    name: str
    group: str  # base | temperature | few-shot | balance-uniform | balance-skewed
    knobs: dict
    edit: Callable[[dict], None] = field(repr=False)
    also_in: tuple[str, ...] = ()  # other groups this arm is the reference point of


def zipf_weights(bank: list[str], s: float, seed: int = 0) -> dict[str, float]:
    """Zipf(s) shares over the bank, ranks assigned by a fixed shuffle (the head is not all one colour)."""
    order = np.random.default_rng(seed).permutation(len(bank))
    return {bank[int(i)]: round(1.0 / (r + 1) ** s, 6) for r, i in enumerate(order)}


def make_arms(base: dict, args) -> list[Arm]:
    bank = list(base["concepts"]["items"])
    demo_pool = copy.deepcopy(base["captions"]["few_shot"])
    cap = base["scoring"]["balance"]["cap"]
    uniform = {c: 1.0 for c in bank}
    skew = zipf_weights(bank, args.zipf)

    def sampling(**kw):
        return lambda d: d["captions"]["sampling"].update(kw)

    def shots(pool, k):
        def edit(d):
            d["captions"]["few_shot"] = copy.deepcopy(pool)
            d["captions"]["shots_per_prompt"] = k
        return edit

    def balance(method, weights=None):
        def edit(d):
            d["scoring"]["balance"] = ({"method": "none"} if method == "none" else {"method": "cap", "cap": cap}
                                       if method == "cap" else {"method": "target", "target": uniform})
            if weights:
                d["concepts"]["weights"] = weights
        return edit

    base_knobs = {"temperature": base["captions"]["sampling"]["temperature"], "few_shot": f"1 of {len(demo_pool)}",
                  "concepts": "uniform", "balance": f"cap {cap}"}
    arms = [Arm("base", "base", base_knobs, lambda d: None, also_in=("temperature", "few-shot", "balance-uniform"))]
    for t in args.temperatures:
        if t != base_knobs["temperature"]:
            arms.append(Arm(f"temp_{t:g}", "temperature", {**base_knobs, "temperature": t}, sampling(temperature=t)))
    arms += [
        Arm("fewshot_0", "few-shot", {**base_knobs, "few_shot": "0"}, shots(demo_pool, 0)),
        Arm("fewshot_1_single", "few-shot", {**base_knobs, "few_shot": "1 of 1 (same example every prompt)"},
            shots(demo_pool[:1], 1)),
        Arm(f"fewshot_3of{len(demo_pool)}", "few-shot", {**base_knobs, "few_shot": f"3 of {len(demo_pool)}"},
            shots(demo_pool, 3)),
        Arm(f"fewshot_1of{len(WIDE_POOL)}", "few-shot", {**base_knobs, "few_shot": f"1 of {len(WIDE_POOL)}"},
            shots(WIDE_POOL, 1)),
        Arm("balance_none", "balance-uniform", {**base_knobs, "balance": "none"}, balance("none")),
        Arm("balance_target", "balance-uniform", {**base_knobs, "balance": "target (uniform)"}, balance("target")),
        Arm("skew_none", "balance-skewed", {**base_knobs, "concepts": f"zipf {args.zipf:g}", "balance": "none"},
            balance("none", skew)),
        Arm("skew_cap", "balance-skewed", {**base_knobs, "concepts": f"zipf {args.zipf:g}", "balance": f"cap {cap}"},
            balance("cap", skew)),
        Arm("skew_target", "balance-skewed", {**base_knobs, "concepts": f"zipf {args.zipf:g}",
                                              "balance": "target (uniform)"}, balance("target", skew)),
    ]
    if args.arms:
        unknown = sorted(set(args.arms) - {a.name for a in arms})
        if unknown:
            raise SystemExit(f"--arms: unknown {unknown}; known: {[a.name for a in arms]}")
        arms = [a for a in arms if a.name in args.arms]
    return arms


def base_spec(world: Path, args) -> dict:
    d = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    d["name"] = "diversity-ablation"
    d["captions"].update(model=str(world / "lm"), per_concept=args.per_concept)
    d["synthesis"].update(prior=str(world / "prior"), encoder={"name": f"local-dir:{world / 'clip'}"}, steps=args.steps)
    d["scoring"]["balance"] = {"method": "cap", "cap": max(1, round(args.cap_ratio * args.per_concept))}
    return d


# ---------------------------------------------------------------- one arm


def score_vlm(synthetic: Path | None, world: Path, out: Path, seed: int, args) -> dict:
    """Train the VLM on the world's human split + `synthetic` (mixed by weight; None: human only) and
    score it on the balanced test split. The training directory is removed afterwards unless --keep."""
    human = world / "data" / "train"
    sources = ([str(human)] if synthetic is None
               else [f"{human}@{1 - args.vlm_share:.6g}", f"{synthetic}@{args.vlm_share:.6g}"])
    row = train_and_score(sources, world, out, steps=args.vlm_steps, batch_size=args.vlm_batch_size, lr=args.vlm_lr,
                          seed=seed, threads=args.threads)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return {"steps": args.vlm_steps, "seed": seed, "human_pairs": Manifest.load(human).samples,
            "synthetic_pairs": 0 if synthetic is None else Manifest.load(synthetic).samples,
            "share": 0.0 if synthetic is None else args.vlm_share, **row}


def matched_metrics(job_dir: Path, m: int, draws: int, seed: int) -> dict:
    """Vendi and distinct-2 of the generated (valid) and selected captions, each on `draws` random
    subsets of `m` captions (mean): what is left when set size is taken out. None where a set has < m."""
    store = Store(job_dir)
    chunks = [store.load_npz(p) for p in sorted(store.glob("stages/captions-*.npz"))]
    cap = {k: np.concatenate([c[k] for c in chunks]) for k in ("caption", "drop", "text_emb")}
    valid = np.nonzero(cap["drop"] == "")[0]
    selected = np.asarray(store.load_npz("stages/selection.npz")["keep"], dtype=int)
    out = {"matched_n": m}
    for name, idx in (("generated", valid), ("selected", selected)):
        if len(idx) < m:
            out[name] = {"vendi": None, "distinct_2": None}
            continue
        rng = np.random.default_rng(seed)
        vs, ds = [], []
        for _ in range(draws):
            sub = rng.choice(idx, m, replace=False)
            vs.append(vendi_score(cap["text_emb"][sub].astype(np.float32)))
            ds.append(distinct_n([str(t) for t in cap["caption"][sub]], 2))
        out[name] = {"vendi": float(np.mean(vs)), "distinct_2": float(np.mean(ds))}
    return out


def prompt_faithfulness(spec, job_dir: Path) -> dict:
    """How the valid captions relate to the concept their prompt asked for: they name it, name only
    other bank concepts (e.g. copied from a few-shot example: `pipeline.selection` then counts those),
    or name no bank concept at all (then the prompt's concept is counted)."""
    store = Store(job_dir)
    chunks = [store.load_npz(p) for p in sorted(store.glob("stages/captions-*.npz"))]
    cap = {k: np.concatenate([c[k] for c in chunks]) for k in ("index", "caption", "drop")}
    requests = build_requests(spec)
    bank = list(spec.concepts.items)
    names, other, none, n = 0, 0, 0, 0
    for i, text, drop in zip(cap["index"], cap["caption"], cap["drop"], strict=False):
        if drop:
            continue
        n += 1
        m = match_concepts(str(text), bank)
        if requests[int(i)].concepts[0] in m:
            names += 1
        elif m:
            other += 1
        else:
            none += 1
    return {"names_prompted": names / n if n else None, "names_other_only": other / n if n else None,
            "names_none": none / n if n else None}


def run_arm(arm: Arm, base: dict, seed: int, job_dir: Path, args) -> dict:
    d = copy.deepcopy(base)
    arm.edit(d)
    d["captions"]["sampling"]["seed"] = seed
    d["synthesis"]["seed"] = seed
    d["output"]["dir"] = str(job_dir)
    spec = parse_spec(d, f"arm {arm.name}")
    if job_dir.exists():  # a fresh directory: a leftover would be resumed, not rerun
        shutil.rmtree(job_dir)
    t = time.perf_counter()
    stats = run_spec(spec, local=True)
    wall = time.perf_counter() - t
    store = Store(job_dir)
    texts = [str(x) for x in np.concatenate([store.load_npz(p)["caption"]
                                             for p in sorted(store.glob("stages/captions-*.npz"))])]
    examples = [texts[int(i)] for i in np.random.default_rng(0).choice(len(texts), min(6, len(texts)), replace=False)]
    return {
        "seed": seed, "job_dir": str(job_dir), "wall_s": round(wall, 1),
        "job_seconds": stats.get("seconds"), "report_seconds": stats.get("report_seconds"),
        "counts": {k: stats[k] for k in COUNTS},
        "dropped": stats.get("dropped", {}), "duplicates_removed": stats.get("duplicates_removed", {}),
        "metrics": {s: {k: stats["metrics"][s].get(k) for k in METRICS} for s in ("generated", "selected")},
        "prompt_faithfulness": prompt_faithfulness(spec, job_dir),
        "example_captions": examples,
    }


# ---------------------------------------------------------------- aggregation, checks, table, plot


def _get(run: dict, path: str):
    v = run
    for p in path.split("."):
        v = v.get(p) if isinstance(v, dict) else None
    return v


def summarise(runs: list[dict], path: str) -> dict | None:
    vals = [v for r in runs if (v := _get(r, path)) is not None]
    if not vals:
        return None
    a = np.asarray(vals, dtype=float)
    return {"mean": float(a.mean()), "half_range": float((a.max() - a.min()) / 2),
            "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": [float(x) for x in a]}


SUMMARY_PATHS = ([f"counts.{k}" for k in COUNTS] + ["wall_s"]
                 + [f"metrics.{s}.{k}" for s in ("generated", "selected") for k in METRICS]
                 + [f"size_matched.{s}.{k}" for s in ("generated", "selected") for k in ("vendi", "distinct_2")]
                 + [f"prompt_faithfulness.{k}" for k in ("names_prompted", "names_other_only", "names_none")]
                 + [f"vlm.{k}" for k, _ in VLM_METRICS] + ["vlm.bleu4", "vlm.synthetic_pairs", "vlm.train_seconds"])


def mean_of(res: dict, arm: str, path: str) -> float | None:
    s = res["arms"].get(arm, {}).get("summary", {}).get(path)
    return None if s is None else s["mean"]


def checks(res: dict) -> list[dict]:
    """The directions the paper (and common sense) lead one to expect, tested on the seed means;
    `per_seed` says whether each seed agrees, `beyond_spread` whether the gap exceeds both arms' half-ranges."""
    arms = res["arms"]
    out = []

    def compare(what: str, lo: str, hi: str, path: str, strict: bool = True):
        """Expect arm `hi` > arm `lo` on `path`."""
        if lo not in arms or hi not in arms:
            return
        a, b = arms[lo]["summary"].get(path), arms[hi]["summary"].get(path)
        if a is None or b is None:
            return
        per_seed = [y > x if strict else y >= x for x, y in zip(a["values"], b["values"], strict=False)]
        gap = b["mean"] - a["mean"]
        out.append({"expectation": what, "metric": path, "low_arm": lo, "high_arm": hi,
                    "low": round(a["mean"], 4), "high": round(b["mean"], 4),
                    "holds": bool(gap > 0 if strict else gap >= 0), "per_seed": per_seed,
                    "beyond_spread": bool(abs(gap) > a["half_range"] + b["half_range"])})

    temps = sorted([(a["knobs"]["temperature"], n) for n, a in arms.items()
                    if a["group"] in ("temperature", "base")])
    for (_, lo), (_, hi) in zip(temps, temps[1:]):
        for p in ("metrics.generated.vendi", "metrics.generated.distinct_2", "size_matched.selected.vendi",
                  "size_matched.selected.distinct_2", "counts.after_dedup"):
            compare("higher temperature -> more diverse captions", lo, hi, p)
        compare("higher temperature -> fewer exact duplicates", hi, lo, "metrics.generated.exact_duplicate_rate")
    for varied in ("base", "fewshot_1of8"):
        for p in ("metrics.generated.vendi", "metrics.generated.distinct_2", "counts.after_dedup"):
            compare("varied few-shot examples -> more diverse than one repeated example", "fewshot_1_single", varied, p)
    for lo, hi in (("balance_none", "base"), ("balance_none", "balance_target"),
                   ("skew_none", "skew_cap"), ("skew_none", "skew_target")):
        compare("balancing -> higher concept entropy", lo, hi, "metrics.selected.concept_entropy")
        compare("balancing -> lower concept Gini", hi, lo, "metrics.selected.concept_gini")
    compare("skewed concept sampling -> lower concept entropy (generated)", "skew_none", "balance_none",
            "metrics.generated.concept_entropy")
    compare("skewed concept sampling -> higher concept Gini (generated)", "balance_none", "skew_none",
            "metrics.generated.concept_gini")
    return out


def vlm_significance(res: dict) -> list[dict]:
    """Every arm against the base arm, and against the human-only VLM, on each VLM metric: `significant`
    when the gap between the seed means exceeds the sum of the two seed standard deviations
    (|Δmean| > std_a + std_b); None with fewer than 2 seeds on either side (no spread to compare with)."""
    refs = {}
    if "base" in res["arms"]:
        refs["base"] = res["arms"]["base"]["summary"]
    if (human := res.get("vlm", {}).get("human_only", {}).get("summary")):
        refs["human only"] = human
    out = []
    for ref_name, ref in refs.items():
        for name, a in res["arms"].items():
            if name == ref_name:
                continue
            for k, _ in VLM_METRICS:
                x, r = a["summary"].get(f"vlm.{k}"), ref.get(f"vlm.{k}")
                if x is None or r is None:
                    continue
                delta, spread = x["mean"] - r["mean"], x["std"] + r["std"]
                enough = len(x["values"]) > 1 and len(r["values"]) > 1
                out.append({"arm": name, "reference": ref_name, "metric": k, "mean": round(x["mean"], 4),
                            "std": round(x["std"], 4), "reference_mean": round(r["mean"], 4),
                            "reference_std": round(r["std"], 4), "delta": round(delta, 4), "spread": round(spread, 4),
                            "significant": bool(abs(delta) > spread) if enough else None})
    return out


def _fmt(s: dict | None, nd: int = 3) -> str:
    if s is None:
        return "–"
    if len(s["values"]) < 2:
        return f"{s['mean']:.{nd}f}"
    return f"{s['mean']:.{nd}f}±{s['half_range']:.{nd}f}"


TABLE_COLS = [
    ("valid", "counts.valid", 0), ("dedup", "counts.after_dedup", 0), ("kept", "counts.after_balance", 0),
    ("gen Vendi", "metrics.generated.vendi", 2), ("gen d-2", "metrics.generated.distinct_2", 4),
    ("gen exact dup", "metrics.generated.exact_duplicate_rate", 3),
    ("off-prompt", "prompt_faithfulness.names_other_only", 3),
    ("sel Vendi@m", "size_matched.selected.vendi", 2), ("sel d-2@m", "size_matched.selected.distinct_2", 3),
    ("gen H(c)", "metrics.generated.concept_entropy", 3), ("sel H(c)", "metrics.selected.concept_entropy", 3),
    ("gen Gini", "metrics.generated.concept_gini", 3), ("sel Gini", "metrics.selected.concept_gini", 3),
    ("prior align", "metrics.selected.prior_alignment_mean", 3), ("wall s", "wall_s", 0),
]


def _fmt_vlm(s: dict | None, significant: bool | None = None) -> str:
    if s is None:
        return "–"
    text = f"{s['mean']:.3f}" if len(s["values"]) < 2 else f"{s['mean']:.3f}±{s['std']:.3f}"
    return text + ("*" if significant else "")


def table(res: dict) -> str:
    head = (["arm", "group", "knob"] + [c[0] for c in TABLE_COLS] + ["syn pairs"] + [label for _, label in VLM_METRICS])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    vlm = res.get("vlm", {})
    sig = {(c["arm"], c["metric"]): c["significant"] for c in vlm.get("significant", []) if c["reference"] == "base"}
    for name, a in res["arms"].items():
        k = a["knobs"]
        knob = {"temperature": f"T={k['temperature']:g}", "few-shot": f"shots {k['few_shot']}",
                "balance-uniform": k["balance"], "balance-skewed": f"{k['concepts']}, {k['balance']}",
                "base": f"T={k['temperature']:g}, shots {k['few_shot']}, {k['balance']}"}[a["group"]]
        row = ([name, a["group"], knob] + [_fmt(a["summary"].get(p), nd) for _, p, nd in TABLE_COLS]
               + [_fmt(a["summary"].get("vlm.synthetic_pairs"), 0)]
               + [_fmt_vlm(a["summary"].get(f"vlm.{m}"), sig.get((name, m))) for m, _ in VLM_METRICS])
        lines.append("| " + " | ".join(row) + " |")
    if (human := vlm.get("human_only", {}).get("summary")):
        row = (["human only", "reference", "no synthetic pairs"] + ["–"] * (len(TABLE_COLS) + 1)
               + [_fmt_vlm(human.get(f"vlm.{m}")) for m, _ in VLM_METRICS])
        lines.append("| " + " | ".join(row) + " |")
    m = res["settings"]["matched_n"]
    lines.append(f"\ngen = every valid caption, sel = after dedup + balancing (what is sharded); @m = on random "
                 f"subsets of {m} captions; H(c) = normalised concept entropy; d-2 = distinct-2; off-prompt = share of "
                 f"valid captions naming only bank concepts other than the prompted one; "
                 f"caption figures mean±half-range over seeds {res['settings']['seeds']}.")
    if vlm.get("steps"):
        lines.append(f"VLM columns: the VLM trained {vlm['steps']} steps (batch {vlm['batch_size']}) on the world's "
                     f"{vlm['human_pairs']} human pairs @ {1 - vlm['share']:.2g} + the arm's selected synthetic pairs "
                     f"(syn pairs) @ {vlm['share']:.2g}, greedy on the balanced test split ({vlm['test_samples']} "
                     f"samples); mean±std over seeds {vlm['seeds']}; * = differs from the base arm by more than the "
                     f"sum of the two stds (`vlm.significant`).")
    else:
        lines.append("VLM columns: not run (--vlm-steps 0).")
    return "\n".join(lines)


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [("temperature", "diversity: temperature"), ("few-shot", "diversity: few-shot"),
              ("balance-uniform", "balance: uniform sampling"), ("balance-skewed", "balance: Zipf sampling")]
    order: list[tuple[str, str]] = []  # (group, arm) with base repeated in each group it anchors
    for g, _ in groups:
        members = [(n, a) for n, a in res["arms"].items() if a["group"] == g or g in a.get("also_in", [])]
        if g == "temperature":
            members.sort(key=lambda x: x[1]["knobs"]["temperature"])
        order += [(g, n) for n, _ in members]
    caption_panels = [("Vendi (size-matched)", "size_matched.{s}.vendi"),
                      ("distinct-2 (size-matched)", "size_matched.{s}.distinct_2"),
                      ("concept entropy (normalised)", "metrics.{s}.concept_entropy"),
                      ("concept Gini", "metrics.{s}.concept_gini")]
    has_vlm = any("vlm.cider" in a["summary"] for a in res["arms"].values())
    # VLM panels: (title, [(summary path, label)]); error bars are the std over seeds
    vlm_panels = ([("VLM CIDEr, balanced test split (error bars: std over seeds)", [("vlm.cider", "CIDEr")]),
                   ("VLM composition accuracy (error bars: std over seeds)",
                    [("vlm.held_out_composition", "held-out compositions"), ("vlm.seen_composition", "seen compositions")])]
                  if has_vlm else [])
    n_panels = len(caption_panels) + len(vlm_panels)
    fig, axes = plt.subplots(n_panels, 1, figsize=(max(10, 0.75 * len(order) + 2), 3.0 * n_panels), sharex=True)
    x = np.arange(len(order))
    style = {"generated": ("#3b6ea8", "o"), "selected": ("#d2691e", "s")}

    def series(ax, key: str, spread: str, offset: float, color: str, marker: str, label: str) -> None:
        means, errs = [], []
        for _, n in order:
            v = res["arms"][n]["summary"].get(key)
            means.append(np.nan if v is None else v["mean"])
            errs.append(0 if v is None else v[spread])
        ax.errorbar(x + offset, means, yerr=errs, fmt=marker, color=color, capsize=3, ms=6, label=label)

    for ax, (title, tmpl) in zip(axes, caption_panels, strict=False):
        for j, s in enumerate(("generated", "selected")):
            color, marker = style[s]
            series(ax, tmpl.format(s=s), "half_range", (j - 0.5) * 0.25, color, marker, f"{s} captions")
        ax.set_title(title, fontsize=10, pad=18 if ax is axes[0] else 6)
    human = res.get("vlm", {}).get("human_only", {}).get("summary", {})
    colors = ["#2e8b57", "#8b3a62"]
    for ax, (title, paths) in zip(axes[len(caption_panels):], vlm_panels, strict=False):
        for j, (key, label) in enumerate(paths):
            offset = (j - (len(paths) - 1) / 2) * 0.25
            series(ax, key, "std", offset, colors[j], "D", f"human + arm's synthetic: {label}")
            if (h := human.get(key)) is not None:
                ax.axhline(h["mean"], color=colors[j], ls="--", lw=1, label=f"human only: {label}")
                ax.axhspan(h["mean"] - h["std"], h["mean"] + h["std"], color=colors[j], alpha=0.12)
        ax.set_title(title, fontsize=10)
        ax.legend(loc="best", fontsize=7)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
        ax.set_xlim(-0.6, len(order) - 0.4)
        start = 0
        for k, (g, label) in enumerate(groups):
            size = sum(1 for gg, _ in order if gg == g)
            if k % 2 == 0 and size:
                ax.axvspan(start - 0.5, start + size - 0.5, color="0.93", zorder=0)
            if ax is axes[0] and size:
                ax.text(start + size / 2 - 0.5, 1.02, label, transform=ax.get_xaxis_transform(), ha="center",
                        fontsize=9, va="bottom")
            start += size
    axes[0].legend(loc="best", fontsize=8)
    axes[-1].set_xticks(x, [n for _, n in order], rotation=40, ha="right", fontsize=8)
    s = res["settings"]
    vlm_note = f"; VLM {res['vlm']['steps']} steps, error bars std" if has_vlm else ""
    fig.suptitle(f"Diversity / balance ablation on the embedded world (per_concept {s['per_concept']}, "
                 f"seeds {s['seeds']}, size-matched m={s['matched_n']})\ncaption error bars: half-range over seeds"
                 f"{vlm_note}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.965))  # room for the two-line title above the group labels
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- main


def versions() -> dict:
    out = {}
    for pkg in ("torch", "transformers", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def finish(res: dict, out_json: Path, out_png: Path | None) -> None:
    for a in res["arms"].values():
        a["summary"] = {p: s for p in SUMMARY_PATHS if (s := summarise(a["runs"], p)) is not None}
    vlm = res.setdefault("vlm", {})
    if "human_only" in vlm:
        h = vlm["human_only"]
        h["summary"] = {p: s for p in SUMMARY_PATHS if p.startswith("vlm.") and (s := summarise(h["runs"], p))}
    vlm["significant"] = vlm_significance(res)
    res["checks"] = checks(res)
    res["table_markdown"] = table(res)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(portable_json(res) + "\n")
    if out_png is not None:
        plot(res, out_png)


def portable_json(res: dict) -> str:
    """RES as JSON that names no path of this machine: paths under the repository become relative to it, and
    scratch space becomes $TMPDIR. A path may follow a quote or a colon (a spec's encoder is "local-dir:<path>")."""
    text = re.sub(rf'([":]){re.escape(str(ROOT))}/', r"\1", json.dumps(res, indent=1))
    return re.sub(rf'([":]){re.escape(tempfile.gettempdir())}/', r"\1$TMPDIR/", text)


def print_checks(res: dict) -> None:
    print("\nexpected directions (seed means):")
    for c in res["checks"]:
        mark = "OK  " if c["holds"] else "FAIL"
        note = "" if c["beyond_spread"] else " (within seed spread)"
        print(f"  {mark} {c['expectation']}: {c['metric']} {c['low_arm']}={c['low']} < {c['high_arm']}={c['high']}"
              f" per-seed {c['per_seed']}{note}")
    comparisons = res.get("vlm", {}).get("significant", [])
    sig = [c for c in comparisons if c["significant"]]
    if comparisons:
        none = " none" if any(c["significant"] is not None for c in comparisons) else " none (needs >= 2 seeds)"
        print("\nVLM differences beyond the seed spread (|Δmean| > std_a + std_b):" + ("" if sig else none))
        for c in sig:
            print(f"  {c['arm']} vs {c['reference']}: {c['metric']} {c['mean']} vs {c['reference_mean']} "
                  f"(Δ {c['delta']:+.4f}, spread {c['spread']})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", default=str(ROOT / "world"))
    ap.add_argument("--per-concept", type=int, default=40, help="captions requested per concept (demo: 100)")
    ap.add_argument("--steps", type=int, default=10, help="prior sampling steps (demo: 25; only prior alignment uses them)")
    ap.add_argument("--cap-ratio", type=float, default=0.4, help="balance cap = round(ratio x per_concept) (demo: 40/100)")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.5, 1.0, 1.5])
    ap.add_argument("--zipf", type=float, default=1.0, help="exponent of the skewed concept weights")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="job seeds (captions, synthesis, balancing); each arm's VLM trains with the same seed")
    ap.add_argument("--arms", nargs="+", help="run only these arms (default: all)")
    ap.add_argument("--matched-n", type=int, default=0,
                    help="subset size of the size-matched metrics (default: the smallest selected set, within 100..500)")
    ap.add_argument("--matched-draws", type=int, default=5)
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "synth2-diversity-ablation"),
                    help="where the job directories go (a fresh run-<time> folder inside)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the job directories and the VLM training directories (default: delete them)")
    ap.add_argument("--results", default=str(ROOT / "bench" / "results" / "diversity_ablation.json"))
    ap.add_argument("--plot", default=str(ROOT / "bench" / "results" / "diversity_ablation.png"))
    ap.add_argument("--replot", metavar="JSON", help="redraw plot, table and checks from a results file; run nothing")
    ap.add_argument("--vlm-steps", type=int, default=300,
                    help="train the VLM this many steps per arm and seed on human + the arm's synthetic pairs and score "
                         "it on the test split (0: skip the VLM score)")
    ap.add_argument("--vlm-batch-size", type=int, default=64)
    ap.add_argument("--vlm-lr", type=float, default=1e-3)
    ap.add_argument("--vlm-share", type=float, default=0.3, help="synthetic share of the VLM's training mix")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (jobs and VLM training)")
    args = ap.parse_args()
    if args.vlm_steps < 0 or not 0 < args.vlm_share < 1:
        ap.error(f"--vlm-steps must be >= 0 (got {args.vlm_steps}) and --vlm-share in (0, 1) (got {args.vlm_share})")
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        finish(res, Path(args.replot), Path(args.plot))
        print(res["table_markdown"])
        print_checks(res)
        return

    world = Path(args.world).resolve()
    for part in ("lm", "prior", "clip") + (("data/train", "data/test") if args.vlm_steps else ()):
        if not (world / part).exists():
            raise SystemExit(f"{world / part} is missing: build the world first "
                             f"(.venv/bin/synth2 world build --out {args.world} --size quick)")
    import torch

    torch.set_num_threads(args.threads)
    base = base_spec(world, args)
    arms = make_arms(base, args)
    work = Path(args.out) / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    world_info = json.loads((world / "world.json").read_text()) if (world / "world.json").exists() else {}
    res: dict = {
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                    "platform": platform.platform(), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
                    "versions": versions()},
        "world": {"path": str(world), "size": world_info.get("size"), "config_hash": world_info.get("config_hash")},
        "settings": {"per_concept": args.per_concept, "synthesis_steps": args.steps,
                     "cap": base["scoring"]["balance"]["cap"], "cap_ratio": args.cap_ratio,
                     "temperatures": args.temperatures, "zipf": args.zipf, "seeds": args.seeds,
                     "matched_n": args.matched_n or "auto", "matched_draws": args.matched_draws,
                     "executor": "pipeline.run.run_spec(spec, local=True)",
                     "base_spec": {k: v for k, v in base.items() if k != "output"},
                     "skewed_weights": zipf_weights(list(base["concepts"]["items"]), args.zipf),
                     "wide_few_shot_pool": WIDE_POOL},
        "vlm": ({"steps": args.vlm_steps, "batch_size": args.vlm_batch_size, "lr": args.vlm_lr, "share": args.vlm_share,
                 "seeds": args.seeds, "decoder": "world/lm", "human_pairs": Manifest.load(world / "data" / "train").samples,
                 "test_samples": Manifest.load(world / "data" / "test").samples,
                 "mix": "[f'{human}@{1-share}', f'{arm shards}@{share}']; human only: [human]",
                 "evaluation": "vlm.evaluate greedy, use_images=False, on the world's data/test (balanced)",
                 "entry_point": "bench._vlm.train_and_score", "seconds": 0.0, "human_only": {"runs": []}}
                if args.vlm_steps else {"steps": 0}),
        "metric_docs_source": "pipeline.metrics.METRIC_DOCS",
        "arms": {a.name: {"group": a.group, "also_in": list(a.also_in), "knobs": a.knobs, "runs": []} for a in arms},
    }
    out_json = Path(args.results)
    total = len(arms) * len(args.seeds)
    k = 0
    f = lambda v, nd: "–" if v is None else f"{v:.{nd}f}"  # noqa: E731

    def vlm_line(v: dict) -> str:
        return (f"VLM CIDEr {v['cider']:.3f} held-out {f(v['held_out_composition'], 3)} "
                f"seen {f(v['seen_composition'], 3)} ({v['train_seconds']:.0f}+{v['eval_seconds']:.0f} s)")

    for seed in args.seeds:  # seed-major: a cut-short run still has every arm at the first seed
        if args.vlm_steps:
            t = time.time()
            v = score_vlm(None, world, work / "vlm" / f"human-seed{seed}", seed, args)
            res["vlm"]["seconds"] += round(time.time() - t, 1)
            res["vlm"]["human_only"]["runs"].append({"seed": seed, "vlm": v})
            print(f"[human only] seed {seed}: {vlm_line(v)}  (elapsed {time.time() - started:.0f} s)", flush=True)
        for arm in arms:
            k += 1
            job_dir = work / f"{arm.name}-seed{seed}"
            r = run_arm(arm, base, seed, job_dir, args)
            if args.vlm_steps:  # now, while the arm's shards exist
                t = time.time()
                r["vlm"] = score_vlm(job_dir, world, work / "vlm" / f"{arm.name}-seed{seed}", seed, args)
                res["vlm"]["seconds"] += round(time.time() - t, 1)
            res["arms"][arm.name]["runs"].append(r)
            g, s = r["metrics"]["generated"], r["metrics"]["selected"]
            print(f"[{k}/{total}] {arm.name} seed {seed}: {r['wall_s']} s  counts {r['counts']}  "
                  f"gen vendi {f(g['vendi'], 2)} d2 {f(g['distinct_2'], 4)}  sel H {f(s['concept_entropy'], 3)} "
                  f"gini {f(s['concept_gini'], 3)}" + (f"  {vlm_line(r['vlm'])}" if "vlm" in r else "")
                  + f"  (elapsed {time.time() - started:.0f} s)", flush=True)
            res["seconds"] = round(time.time() - started, 1)
            finish(res, out_json, None)  # partial results survive an interrupted run
    sizes = [r["counts"]["after_balance"] for a in res["arms"].values() for r in a["runs"] if r["counts"]["after_balance"]]
    m = args.matched_n or int(np.clip(min(sizes, default=100), 100, 500))
    res["settings"]["matched_n"] = m
    for a in res["arms"].values():
        for r in a["runs"]:
            r["size_matched"] = matched_metrics(Path(r["job_dir"]), m, args.matched_draws, r["seed"])
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["seconds"] = round(time.time() - started, 1)
    res["timestamp"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    finish(res, out_json, Path(args.plot))
    print()
    print(res["table_markdown"])
    print_checks(res)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {out_json} and {args.plot} ({res['seconds']} s)" + (f"; job dirs in {work}" if args.keep else ""))


if __name__ == "__main__":
    main()
