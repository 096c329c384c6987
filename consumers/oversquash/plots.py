"""PNG plots of a `run_analysis` result (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLORS = {"float32": "C0", "bfloat16": "C3", "float16": "C2"}
FLOOR = 1e-12  # where exact zeros (identical representations) are drawn on the log axis


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _y(v):
    return [max(x, FLOOR) if x is not None else np.nan for x in v]


def plot_collapse(res: dict, path: Path) -> str:
    plt = _plt()
    fams = list(res["families"])
    aligns = tuple(res["families"][fams[0]]["plain"]["align"])
    fig, axes = plt.subplots(len(aligns), len(fams), figsize=(5.2 * len(fams), 4.2 * len(aligns)), squeeze=False)
    for j, fam in enumerate(fams):
        r = res["families"][fam]
        for i, align in enumerate(aligns):
            ax = axes[i][j]
            for variant, ls in (("plain", "-"), ("sep", "--"), ("sep_end", ":")):
                if variant not in r:
                    continue
                c = r[variant]
                for d, cur in c["align"][align].items():
                    lab = f"{d}" + ("" if variant == "plain" else
                                    f", comma every {c['sep_every']} from the {'end' if c.get('sep_from_end') else 'start'}")
                    ax.plot(c["n"], _y(cur["l2"]), ls, color=COLORS.get(d, "k"), marker=".", ms=3, lw=1.2, label=lab)
                    if variant == "plain" and d != "float32" and cur["identical_n"] is not None:
                        ax.axvline(cur["identical_n"], color=COLORS.get(d, "k"), ls=":", lw=1)
                        ax.text(cur["identical_n"], FLOOR * 10, f" {d} identical\n n={cur['identical_n']}", fontsize=7,
                                color=COLORS.get(d, "k"), va="bottom")
            f32 = r["plain"]["align"][align].get("float32")
            if f32 and f32.get("below_half_bf16_ulp_n"):
                ax.axvline(f32["below_half_bf16_ulp_n"], color="gray", ls="-.", lw=0.8, label="f32 L-inf < half bf16 ulp")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{fam} ({align} positions)", fontsize=9)
            ax.set_xlabel("n (repeated tokens)")
            ax.set_ylabel("L2 distance, last token, final layer")
            ax.grid(alpha=0.3, which="both")
            if i == 0 and j == 0:
                ax.legend(fontsize=6)
    fig.suptitle(f"Representational collapse: {res['name']} (zeros drawn at {FLOOR:g})", fontsize=10)
    return _save(plt, fig, path)


def plot_layers(res: dict, path: Path, family: str = "ones") -> str:
    plt = _plt()
    r = res["families"][family]["plain"]
    aligns = tuple(r["align"])
    fig, axes = plt.subplots(1, len(aligns), figsize=(5 * len(aligns), 4), squeeze=False)
    for ax, align in zip(axes[0], aligns):
        cur = r["align"][align]["float32"]
        layers = np.array(cur["l2_layers"])
        for li in range(layers.shape[1]):
            ax.plot(r["n"], _y(layers[:, li]), marker=".", ms=3, label="embeddings" if li == 0 else f"layer {li}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{family}, float32, per layer ({align} positions)", fontsize=9)
        ax.set_xlabel("n")
        ax.set_ylabel("L2 distance")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6 if layers.shape[1] > 12 else 7, ncol=2 if layers.shape[1] > 12 else 1)
    return _save(plt, fig, path)


def plot_sensitivity(res: dict, path: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, v in res["sensitivity"].items():
        ax.plot(range(v["length"]), v["curve"], marker=".", ms=2, lw=1, label=f"{label} (length {v['length']})")
    ax.set_yscale("log")
    ax.set_xlabel("input position")
    ax.set_ylabel("||d h_last / d x_i||_F")
    ax.set_title(f"Over-squashing: last-token sensitivity to each input, {res['name']}", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def plot_synthetic(res: dict, path: Path) -> str:
    plt = _plt()
    keys = [k for k in ("synthetic", "synthetic_input_pe") if k in res]
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        s = res[key]
        for enc, v in s["encodings"].items():
            ax.plot(s["n"], _y(v["l2"]), marker=".", ms=3, label=f"{enc} ({'collapses' if v['collapsed'] else 'no collapse'})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("n (repeated tokens)")
        ax.set_ylabel("L2 distance of last-token outputs, n vs n+1")
        ax.set_title(f"One attention layer, d={s['d']}, PE on {'q/k' if s['mode'] == 'qk' else 'the input (GPT-2 style)'}",
                     fontsize=9)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def plot_behaviour(res: dict, path: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, task in zip(axes, ("counting", "copying")):
        for label, b in res["behaviour"].items():
            t = b[task]
            tag = "" if t["follows_prompt"] else " (n/a: does not follow the prompt)"
            name = {"plain": "no separators", "sep": f"comma every {b.get('sep_every')} digits"}.get(label, label)
            ax.plot(b["lengths"], t["raw_accuracy"], marker="o", ms=3, label=f"{name}{tag}")
        if res.get("behaviour_train_max_n"):
            ax.axvline(res["behaviour_train_max_n"], color="gray", ls=":", lw=1, label="longest n in training")
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("sequence length n")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{task}: {res['name']}", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(plt, fig, path)


def write_plots(res: dict, out_dir: str | Path) -> list[str]:
    out = Path(out_dir)
    files = [plot_collapse(res, out / "collapse_curves.png"), plot_layers(res, out / "collapse_layers.png"),
             plot_sensitivity(res, out / "sensitivity.png")]
    if "behaviour" in res:
        files.append(plot_behaviour(res, out / "behaviour.png"))
    if "synthetic" in res:
        files.append(plot_synthetic(res, out / "synthetic.png"))
    return files
