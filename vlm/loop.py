"""The closed generation loop (`synth2 loop`): evaluation finds what the VLM gets wrong, the next
synthetic job makes more of it.

Round r (1..R):
  1. concept weights: uniform in round 1 (and in every round of the `uniform` baseline); otherwise from
     the previous round's errors on the *validation* split, per concept (`errors_to_weights`); with
     `kinds`, also the share of two-concept prompts (relation captions) from the share of the validation
     misses that are relation scenes (`relation_share`), so the job makes the kind of caption the VLM gets
     wrong as well as the concepts;
  2. a synthetic job: the base spec with `concepts.weights` set and a per-round sampling seed, run through
     `pipeline.run.run_spec` (local executor); its output directory is named after the spec hash, so a
     job another arm or seed already ran is reused (the uniform rounds are the same job in every seed);
  3. exactly `pairs_per_round` of its pairs (a seeded random subset; with `kinds`, split between the
     one-concept and the two-concept job by that share), so every arm gets the same synthetic budget; the
     round's synthetic data is every round's subset so far;
  4. the VLM trained from scratch at `steps` on human @ (1 - share) + synthetic @ share;
  5. evaluation: per concept and per composition on the validation split (for the weights), the headline
     figures on the test split (CIDEr, BLEU-4, held-out-composition accuracy) — the test split never
     decides a weight.

`loop.json` holds everything each round decided (weights, job ids, pair counts, scores) and is rewritten
after every round; a rerun skips finished rounds. `round-R.png` plots the round's weights against its
validation accuracy per concept; `loop.png` the scores per round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import yaml

log = logging.getLogger(__name__)

STRATEGIES = ("errors", "uniform")


@dataclass
class LoopConfig:
    human: str  # the human-annotated training shards
    val: str  # validation shards: decide the weights
    test: str  # test shards: reported, never used for a decision
    decoder: str  # causal LM the VLM starts from
    spec: str | dict  # the synthetic job's base spec (YAML path or dict); its concepts.items are the bank
    out: str
    strategy: str = "errors"
    rounds: int = 3
    pairs_per_round: int = 500
    oversample: float = 2.0  # captions requested per pair kept (dedup removes some)
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    share: float = 0.3  # synthetic share of the training mix
    alpha: float = 2.0  # weight ∝ error^alpha
    floor: float = 0.1  # share of every job spread uniformly (no concept starves)
    seed: int = 0
    jobs_dir: str | None = None  # where the synthetic jobs go (default: OUT/jobs); shared between arms and seeds
    kinds: bool = False  # errors strategy: also weight relation captions (two-concept prompts) by their misses
    eval_limit: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        checks = {"strategy": self.strategy in STRATEGIES, "rounds": self.rounds >= 1,
                  "pairs_per_round": self.pairs_per_round >= 1, "oversample": self.oversample >= 1,
                  "steps": self.steps >= 1, "share": 0 < self.share < 1, "alpha": self.alpha >= 0,
                  "floor": 0 <= self.floor <= 1}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError("; ".join(f"{k}: invalid value {getattr(self, k)!r}" for k in bad))


def errors_to_weights(per_concept: dict[str, dict], items: list[str], alpha: float = 2.0,
                      floor: float = 0.1) -> dict[str, float]:
    """Concept weights (summing to 1) from per-concept validation results `{concept: {n, correct}}`.

    The error rate is smoothed (Laplace: (misses + 1) / (n + 2), so a concept seen twice and missed twice
    is not certain to be wrong, and an unseen one counts as 0.5), raised to `alpha` (0: uniform; larger:
    sharper), normalised, and mixed with the uniform distribution at share `floor`."""
    err = np.array([(per_concept.get(c, {}).get("n", 0) - per_concept.get(c, {}).get("correct", 0) + 1)
                    / (per_concept.get(c, {}).get("n", 0) + 2) for c in items], dtype=float)
    w = err ** alpha
    w = w / w.sum()
    w = (1 - floor) * w + floor / len(items)
    return {c: float(x) for c, x in zip(items, w, strict=True)}


def relation_share(composition_by_kind: dict[str, dict], floor: float = 0.1) -> float:
    """The share of the next job's pairs to make from two-concept prompts (relation captions): the share of
    the validation misses, `{kind: {seen|held_out: {accuracy, n}}}`, that are relation scenes, mixed with an
    even split at share `floor` as `errors_to_weights` mixes concepts. 0 where no scene has a kind."""
    misses = {k: sum((1 - v["accuracy"]) * v["n"] for v in parts.values() if v["n"])  # accuracy is None at n=0
              for k, parts in composition_by_kind.items()}
    total = sum(misses.values())
    if not total:
        return 0.0
    return float((1 - floor) * misses.get("relation", 0.0) / total + floor / 2)


def _base_spec(spec: str | dict) -> dict:
    if isinstance(spec, dict):
        return json.loads(json.dumps(spec))
    return yaml.safe_load(Path(spec).read_text())


def job_spec(base: dict, weights: dict[str, float] | None, captions: int, round_: int, name: str):
    """The round's synthetic job: `captions` captions over the concept bank, shared out by `weights`."""
    from pipeline.spec import parse_spec

    d = json.loads(json.dumps(base))
    items = d["concepts"]["items"]
    d["kind"] = "synthesize"
    if weights is None:
        d["concepts"].pop("weights", None)
    else:  # the spec bounds a weight to (0, 1e6]: scale to a readable range, keep every concept > 0
        d["concepts"]["weights"] = {c: round(max(weights[c] * 1000, 1e-3), 4) for c in items}
    d["captions"]["per_concept"] = max(1, math.ceil(captions / len(items)))
    d["captions"].setdefault("sampling", {})["seed"] = 1000 + round_
    # No rebalancing after dedup: a weighted job keeps the shares it asked for, and the uniform
    # baseline is selected the same way.
    d.setdefault("scoring", {})["balance"] = {"method": "none"}
    d["synthesis"]["seed"] = 1000 + round_
    d.setdefault("output", {})["name"] = name
    d["output"]["dir"] = "unused"
    return parse_spec(d, "loop")


def run_job_cached(spec, jobs_dir: Path) -> tuple[str, Path]:
    """Run the job into JOBS_DIR/<spec hash> (reusing a finished one); returns (job id, directory)."""
    from contracts.shards import Manifest
    from pipeline.run import run_spec
    from pipeline.spec import spec_hash

    job_id = spec_hash(spec)
    d = jobs_dir / job_id[:16]
    m = Manifest.load(d) if (d / "manifest.json").exists() else None
    if m is None or not m.complete:
        spec = spec.model_copy(update={"output": spec.output.model_copy(update={"dir": str(d)})})
        run_spec(spec, local=True)
    return job_id, d


def _parts(row: dict, out: Path) -> list[tuple[Path, int]]:
    """A finished round's synthetic subsets as (directory, pairs); `parts` name them relative to OUT."""
    return [(out / p["dir"], p["pairs"]) for p in row["parts"]] if "parts" in row else \
        [(out / f"round-{row['round']}" / "synthetic", row["pairs"])]


def subset(src: Path, n: int, out: Path, seed: int) -> int:
    """A seeded random subset of at most `n` samples of shard directory `src`, as shard directory `out`."""
    from contracts.shards import Manifest, ShardWriter, iter_tar, make_sample, shard_paths

    if (out / "manifest.json").exists() and (m := Manifest.load(out)) and m.complete:
        return m.samples
    samples = [s for p in shard_paths(src) for s in iter_tar(p)]
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(samples), min(n, len(samples)), replace=False).tolist())
    w = ShardWriter(out, out.name, 1000)
    for i in keep:
        s = samples[i]
        w.write(make_sample(s["__key__"], s["txt"], s["emb.npy"], s["json"]))
    w.close()
    return len(keep)


def _concept_shares(d: Path, items: list[str]) -> dict[str, int]:
    from contracts.shards import iter_tar, shard_paths

    counts = dict.fromkeys(items, 0)
    for p in shard_paths(d):
        for s in iter_tar(p):
            meta = s["json"] if isinstance(s["json"], dict) else json.loads(s["json"])
            for c in meta.get("concepts") or []:
                if c in counts:
                    counts[c] += 1
    return counts


def _scores(ev: dict) -> dict:
    g = ev["decoding"]["greedy"]
    w = g.get("world") or {}
    out = {"samples": ev["samples"], "cider": g["cider"], "bleu4": g["bleu4"]}
    if w:
        out.update(parse_rate=w["parse_rate"], attributes={k: v["accuracy"] for k, v in w["attributes"].items()},
                   held_out_composition=w["held_out_composition"]["accuracy"],
                   held_out_n=w["held_out_composition"]["n"],
                   seen_composition=w["seen_composition"]["accuracy"], per_concept=w["per_concept"],
                   composition_by_kind={k: {part: v["accuracy"] for part, v in parts.items()}
                                        for k, parts in w["composition_by_kind"].items()},
                   composition_by_kind_n=w["composition_by_kind"])
    return out


def run_loop(cfg: LoopConfig, progress=None) -> dict:
    """Run (or resume) the loop; returns the contents of OUT/loop.json."""
    import torch

    from vlm.evaluate import evaluate
    from vlm.train import TrainConfig, train

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs_dir = Path(cfg.jobs_dir) if cfg.jobs_dir else out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    base = _base_spec(cfg.spec)
    items = list(base["concepts"]["items"])
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("out", "jobs_dir", "threads")}
    if not cfg.kinds:  # a setting added later: loops without it keep their fingerprint (and resume)
        settings.pop("kinds")
    fp = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = out / "loop.json"
    state = json.loads(path.read_text()) if path.exists() else None
    if state is None or state.get("fingerprint") != fp:
        if state is not None:
            log.warning("%s holds a loop with other settings: starting over", out)
        state = {"fingerprint": fp, "settings": settings, "concepts": items, "rounds": []}
    total = cfg.rounds
    weights: dict[str, float] | None = None
    rel_share = 0.0
    if state["rounds"]:
        weights = state["rounds"][-1]["next_weights"]
        rel_share = state["rounds"][-1].get("next_relation_share", 0.0)
    for r in range(len(state["rounds"]) + 1, cfg.rounds + 1):
        t0 = time.time()
        if progress:
            progress(r - 1, total, f"round {r}: synthetic job")
        use = None if (r == 1 or cfg.strategy == "uniform") else weights
        share = rel_share if (use is not None and cfg.kinds) else 0.0
        n_rel = round(cfg.pairs_per_round * share)
        from contracts.shards import Manifest

        parts, jobs = [], []  # (directory, pairs) of this round's subsets; (job id, pairs it made, its folder)
        for name, n, per_prompt, sub in (("", cfg.pairs_per_round - n_rel, 1, "synthetic"),
                                         ("-pairs", n_rel, 2, "synthetic-relation")):
            if n == 0:
                continue
            b = base if per_prompt == 1 else {**base, "concepts": {**base["concepts"], "per_prompt": per_prompt}}
            job_id, job_dir = run_job_cached(job_spec(b, use, int(n * cfg.oversample), r, f"loop-r{r}{name}"),
                                             jobs_dir)
            d = out / f"round-{r}" / sub
            kept = subset(job_dir, n, d, seed=cfg.seed * 1000 + r)
            if kept < n:
                log.warning("round %d: job %s made %d pairs, fewer than the %d asked", r, job_id[:16], kept, n)
            parts.append((d, kept))
            jobs.append((job_id, Manifest.load(job_dir).samples, job_dir))
        kept = sum(k for _, k in parts)
        t_job = time.time() - t0
        # Training data: the human split, and every round's synthetic subsets so far (by pair count).
        subs = [p for row in state["rounds"] for p in _parts(row, out)] + parts
        n_syn = sum(k for _, k in subs)
        sources = [f"{cfg.human}@{1 - cfg.share:.6g}"] + [f"{d}@{cfg.share * k / n_syn:.6g}" for d, k in subs]
        if progress:
            progress(r - 1, total, f"round {r}: train")
        t = time.time()
        tcfg = TrainConfig(sources=sources, decoder=cfg.decoder, out=str(out / f"round-{r}" / "train"),
                           steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, threads=cfg.threads,
                           progress=False, ckpt_every=cfg.steps, log_every=max(cfg.steps // 10, 1),
                           shuffle_buffer=2000)
        tr = train(tcfg)
        t_train = time.time() - t
        if progress:
            progress(r - 1, total, f"round {r}: evaluate")
        t = time.time()
        model = out / f"round-{r}" / "train" / "model"
        val = _scores(evaluate(model, cfg.val, beams=(1,), batch_size=256, use_images=False, limit=cfg.eval_limit))
        test = _scores(evaluate(model, cfg.test, beams=(1,), batch_size=256, use_images=False, limit=cfg.eval_limit))
        test.pop("per_concept", None)
        test.pop("composition_by_kind_n", None)
        weights = errors_to_weights(val.get("per_concept", {}), items, cfg.alpha, cfg.floor)
        rel_share = relation_share(val.get("composition_by_kind_n", {}), cfg.floor) if cfg.kinds else 0.0
        concepts = dict.fromkeys(items, 0)
        for d, _ in parts:
            for c, k in _concept_shares(d, items).items():
                concepts[c] += k
        row = {"round": r, "strategy": cfg.strategy, "weights": use, "job_id": jobs[0][0],
               "job_dir": str(jobs[0][2]), "job_pairs": jobs[0][1], "pairs": kept, "synthetic_pairs_total": n_syn,
               "parts": [{"dir": str(d.relative_to(out)), "pairs": k, "job_id": j, "job_pairs": jp}
                         for (d, k), (j, jp, _) in zip(parts, jobs, strict=True)],
               "synthetic_concepts": concepts, "sources": sources,
               "train_loss": tr["final_loss"], "val": val, "test": test, "next_weights": weights,
               **({"relation_share": share, "next_relation_share": rel_share} if cfg.kinds else {}),
               "seconds": {"job": round(t_job, 1), "train": round(t_train, 1), "eval": round(time.time() - t, 1)}}
        state["rounds"].append(row)
        path.write_text(json.dumps(state, indent=1))
        plot_round(row, items, out / f"round-{r}.png")
        plot_loop(state, out / "loop.png")
        log.info("round %d (%s): test held-out comp %.3f, CIDEr %.3f", r, cfg.strategy,
                 test.get("held_out_composition") or 0.0, test["cider"])
    if progress:
        progress(total, total, "done")
    return state


def plot_round(row: dict, items: list[str], png: Path) -> None:
    """The weights this round's job used and the validation accuracy per concept that sets the next ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(items))
    used = row["weights"] or {c: 1 / len(items) for c in items}
    nxt = row["next_weights"]
    acc = [row["val"].get("per_concept", {}).get(c, {}).get("accuracy", np.nan) for c in items]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(14, 6), sharex=True)
    a1.bar(x - 0.2, [used[c] for c in items], 0.4, label=f"weights used in round {row['round']}")
    a1.bar(x + 0.2, [nxt[c] for c in items], 0.4, label="weights for the next round")
    a1.set_ylabel("share of the job")
    a1.legend()
    a1.set_title(f"round {row['round']} ({row['strategy']}): test held-out comp. "
                 f"{row['test'].get('held_out_composition') or 0:.3f}, CIDEr {row['test']['cider']:.3f}")
    a2.bar(x, acc, color="#3a7")
    a2.set_ylabel("val composition acc.")
    a2.set_ylim(0, 1)
    a2.set_xticks(x)
    a2.set_xticklabels(items, rotation=90, fontsize=7)
    for a in (a1, a2):
        a.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def plot_loop(state: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r["round"] for r in state["rounds"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, title in ((axes[0], "held_out_composition", "test held-out composition acc."),
                           (axes[1], "cider", "test CIDEr")):
        ax.plot(rounds, [r["test"].get(key) or 0.0 for r in state["rounds"]], "o-")
        ax.set_xticks(rounds)
        ax.set_xlabel("round")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
