"""Hierarchical Transformer Memory acceptance (issue #18): recall over long episodes, and cost per step.

    flock /tmp/synth2-heavy.lock nice -n 5 .venv/bin/python bench/htm_acceptance.py [--world DIR] [--steps 500]

1. accuracy: for each task (passive visual match, one-shot naming) and seed, trains HTM, full attention
   (TrXL-style, same memory, same parameters) and an LSTM of equal parameter count at one episode
   length on the world's train embeddings, and evaluates each at 1x, 4x and 10x that length on the
   test split's embeddings (objects never seen in training). Mean ± std over seeds.
2. scaling: one streaming step (batch 8) of HTM vs full attention with a memory already holding L
   steps, L from 256 to 16384: CPU time per step (one thread, best of repeats) and the peak bytes of
   the step's intermediate tensors (every tensor an op returns, counted from creation to release;
   the stored memory itself, the same for both, is not).

Writes bench/results/htm/accuracy.json, accuracy.png, scaling.json, scaling.png and runs/<task>-seed<N>.json
(each run's own results.json). Without --world, a tiny embedded world is built in the work directory.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "htm"
KINDS = ("htm", "full", "lstm")
TASKS = ("passive_visual_match", "one_shot_naming")


def accuracy(args, work: Path) -> None:
    """Train and evaluate every (task, seed); each run's results go to runs/<task>-seed<N>.json as it ends."""
    from consumers.htm.job import HTMParams
    from consumers.htm.train import default_world, run

    world = Path(args.world) if args.world else default_world(work)
    data, test = str(world / "data" / "train"), str(world / "data" / "test")
    for task in args.tasks:
        for seed in args.seeds:
            p = HTMParams(task=task, data=data, eval_data=test, length=args.length, eval_multiples=[1, 4, 10],
                          chunk=args.chunk, k=args.k, d_model=args.d_model, heads=args.heads, layers=args.layers,
                          steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_episodes=args.episodes,
                          explore=args.explore, seed=seed)
            t = time.time()
            r = run(p, work / f"{task}-seed{seed}")
            r["wall_seconds"] = round(time.time() - t, 1)
            r["data"], r["eval_data"] = "<world>/data/train", "<world>/data/test"  # the machine's paths are not results
            r["budget"] = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "length", "chunk", "k",
                                                         "d_model", "heads", "layers", "explore", "episodes")}
            (OUT / "runs").mkdir(parents=True, exist_ok=True)
            (OUT / "runs" / f"{task}-seed{seed}.json").write_text(json.dumps(r, indent=1))
            print(f"{task} seed {seed} ({r['wall_seconds']} s): " + "; ".join(
                f"{k} " + " ".join(f"{e['accuracy']:.3f}" for e in m["eval"]) for k, m in r["models"].items()),
                flush=True)


def summary() -> dict:
    """Mean ± std over the seeds of every run in runs/."""
    import numpy as np

    runs = {f.stem: json.loads(f.read_text()) for f in sorted((OUT / "runs").glob("*.json"))}
    table = {}
    for task in TASKS:
        mine = [r for r in runs.values() if r["task"] == task]
        if not mine:
            continue
        rows = {}
        for kind in KINDS:
            accs = np.array([[e["accuracy"] for e in r["models"][kind]["eval"]] for r in mine])
            rows[kind] = {"mean": accs.mean(0).round(4).tolist(), "std": accs.std(0).round(4).tolist(),
                          "per_seed": accs.round(4).tolist(), "parameters": mine[0]["models"][kind]["parameters"],
                          "train_seconds": [r["models"][kind]["train_seconds"] for r in mine]}
        table[task] = {"train_length": mine[0]["train_length"], "lengths": mine[0]["lengths"], "multiples": [1, 4, 10],
                       "chance": mine[0]["chance"], "seeds": [r["seed"] for r in mine], "models": rows,
                       "budget": mine[0]["budget"], "wall_seconds": sum(r["wall_seconds"] for r in mine)}
    return {"tasks": table, "data": next(iter(runs.values()))["data"], "eval_data": next(iter(runs.values()))["eval_data"],
            "goal": "HTM >= 0.90 at 10x where the LSTM is near chance"}


class PeakBytes:
    """Peak bytes of live tensors created inside the `with` block, through a TorchDispatchMode: every op's
    outputs are counted (once per storage) until the tensor is released."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.live = self.peak = 0
        self.seen: dict[int, int] = {}

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker.track(out, (args, kwargs))
                return out

        self.mode = Mode()

    def track(self, out, inputs) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        # a view of an input (a slice of the stored memory, say) allocates nothing
        given = {t.untyped_storage().data_ptr() for t in tree_leaves(inputs) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage().data_ptr()
            if key in self.seen or key in given or t.untyped_storage().nbytes() == 0:
                continue
            self.seen[key] = n = t.untyped_storage().nbytes()
            self.live += n
            self.peak = max(self.peak, self.live)
            weakref.finalize(t, self.release, key)

    def release(self, key: int) -> None:
        self.live -= self.seen.pop(key, 0)

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def scaling(args) -> dict:
    import torch

    from consumers.htm.model import ModelConfig, build_model

    torch.set_num_threads(1)
    B, R = 8, 2 * args.chunk  # batch, steps timed per repeat (two commits)
    rows = []
    for L in args.memory_lengths:
        row = {"memory_steps": L}
        for kind in ("htm", "full"):
            torch.manual_seed(0)
            model, _ = build_model(kind, ModelConfig(emb_dim=32, d_model=args.d_model, heads=args.heads,
                                                     layers=args.layers, chunk=args.chunk, k=args.k))
            model.eval()
            T = L + R
            batch = {"emb": torch.randn(B, T, 32), "has_emb": torch.ones(B, T, dtype=torch.bool),
                     "name": torch.zeros(B, T, dtype=torch.long), "phase": torch.full((B, T), 2, dtype=torch.long)}
            with torch.no_grad():
                best = float("inf")
                for _ in range(args.repeats):
                    states = model.start(B)
                    for block, st in zip(model.blocks, states, strict=True):  # a memory of L steps, written at once
                        mem = torch.randn(B, L // args.chunk, args.chunk, args.d_model)
                        st.write(*block.memory.keys_values(mem, torch.ones(mem.shape[:3], dtype=torch.bool)))
                    t0 = time.thread_time()
                    for t in range(L, L + R):
                        model.step(batch, t, states)
                    best = min(best, (time.thread_time() - t0) / R)
                states = model.start(B)
                for block, st in zip(model.blocks, states, strict=True):
                    mem = torch.randn(B, L // args.chunk, args.chunk, args.d_model)
                    st.write(*block.memory.keys_values(mem, torch.ones(mem.shape[:3], dtype=torch.bool)))
                with PeakBytes() as pk:
                    model.step(batch, L, states)
            row[kind] = {"cpu_ms_per_step": round(1e3 * best, 3), "peak_step_bytes": pk.peak}
        row["time_ratio_full_over_htm"] = round(row["full"]["cpu_ms_per_step"] / row["htm"]["cpu_ms_per_step"], 2)
        row["memory_ratio_full_over_htm"] = round(row["full"]["peak_step_bytes"] / row["htm"]["peak_step_bytes"], 2)
        rows.append(row)
        print(f"memory {L:6d}: htm {row['htm']['cpu_ms_per_step']:.2f} ms {row['htm']['peak_step_bytes'] / 1e6:.2f} MB, "
              f"full {row['full']['cpu_ms_per_step']:.2f} ms {row['full']['peak_step_bytes'] / 1e6:.2f} MB", flush=True)
    return {"batch": B, "timed_steps": R, "repeats": args.repeats, "chunk": args.chunk, "k": args.k,
            "d_model": args.d_model, "layers": args.layers, "rows": rows,
            "stored_memory_bytes_per_step": 2 * args.d_model * 4 * B * args.layers,
            "read_per_step": {"htm": f"{args.k} chunks x {args.chunk} steps + one summary per chunk",
                              "full": "every stored step"}}


def plot_accuracy(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = res["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.6), squeeze=False)
    for ax, (task, t) in zip(axes[0], tasks.items(), strict=True):
        for kind, r in t["models"].items():
            ax.errorbar(t["lengths"], r["mean"], yerr=r["std"], marker="o", capsize=3, label=kind)
        ax.axhline(t["chance"], color="grey", ls=":", label="chance")
        ax.axhline(0.9, color="green", ls="--", lw=0.7)
        ax.set(xscale="log", xlabel=f"episode length (trained at {t['train_length']})", ylabel="accuracy",
               ylim=(0, 1.02), title=f"{task.replace('_', ' ')} ({len(t['seeds'])} seeds)")
        ax.set_xticks(t["lengths"], [str(n) for n in t["lengths"]])
        ax.minorticks_off()
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scaling(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L = [r["memory_steps"] for r in res["rows"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for kind in ("htm", "full"):
        a.plot(L, [r[kind]["cpu_ms_per_step"] for r in res["rows"]], "o-", label=kind)
        b.plot(L, [r[kind]["peak_step_bytes"] / 1e6 for r in res["rows"]], "o-", label=kind)
    a.set(xscale="log", yscale="log", xlabel="memory length (steps)", ylabel="CPU ms per step",
          title=f"time per step (batch {res['batch']})")
    b.set(xscale="log", yscale="log", xlabel="memory length (steps)", ylabel="MB", title="peak working memory per step")
    for ax in (a, b):
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", help="A built world (default: build a tiny one in --work).")
    ap.add_argument("--work", default="/tmp/htm-acceptance", help="Model folders go here (not committed).")
    ap.add_argument("--only", choices=["accuracy", "scaling", "summary"])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--explore", type=float, default=1.0, help="Gumbel noise on HTM's chunk scores (late in training).")
    ap.add_argument("--episodes", type=int, default=256)
    ap.add_argument("--memory-lengths", default="256,1024,4096,16384")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.tasks = [t for t in args.tasks.split(",") if t]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.memory_lengths = [int(x) for x in args.memory_lengths.split(",")]
    import torch

    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    machine = {"machine": platform.machine(), "cpus": __import__("os").cpu_count(), "torch_threads": 1,
               "torch": torch.__version__, "note": "2 CPU cores shared with other jobs"}
    if args.only in (None, "scaling"):
        res = {**scaling(args), **machine}
        (OUT / "scaling.json").write_text(json.dumps(res, indent=1))
        plot_scaling(res, OUT / "scaling.png")
    if args.only in (None, "accuracy"):
        accuracy(args, work)
    if args.only in (None, "accuracy", "summary"):
        res = {**summary(), **machine}
        (OUT / "accuracy.json").write_text(json.dumps(res, indent=1))
        plot_accuracy(res, OUT / "accuracy.png")
        for task, t in res["tasks"].items():
            print(task, {k: [f"{m:.3f}±{s:.3f}" for m, s in zip(r["mean"], r["std"], strict=True)]
                         for k, r in t["models"].items()})


if __name__ == "__main__":
    main()
