"""PNG plots of a train run's results (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

COLORS = {"without": "tab:gray", "with": "tab:blue"}


def plot_runs(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, runs = results["summary"], results["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if s["env"] == "gridworld":
        ax = axes[0]
        for r in runs:
            v = "with" if r["abstraction"] else "without"
            h = r["history"]
            ax.plot([x["episode"] for x in h], [x["steps"] for x in h], color=COLORS[v], alpha=0.5, lw=0.8,
                    label=f"{v} abstraction" if r["seed"] == runs[0]["seed"] else None)
        ax.set(xlabel="episode", ylabel="episode length (steps)", yscale="log",
               title=f"Q-learning on {s['layout']} (optimal {_opt_len(results)} steps)")
        ax.legend()
        ax = axes[1]
        for i, k in enumerate(("episodes_to_optimal", "steps_to_optimal")):
            for j, v in enumerate(s[k]):
                vals = [x for x in s[k][v]["values"] if x is not None]
                ax.scatter([i * 3 + j] * len(vals), vals, color=COLORS[v], label=f"{v} abstraction" if i == 0 else None)
                if s[k][v]["mean"] is not None:
                    ax.hlines(s[k][v]["mean"], i * 3 + j - 0.3, i * 3 + j + 0.3, color=COLORS[v])
        ax.set(xticks=[0.5, 3.5], xticklabels=["episodes", "env steps"], yscale="log", title="to the optimal policy (per seed)")
        ax.legend()
    else:
        for r in runs:
            v = "with" if r["abstraction"] else "without"
            c = r["curve"]
            axes[0].plot([x["env_steps"] for x in c], [x["mean_return"] for x in c], color=COLORS[v], alpha=0.7,
                         label=f"{v} abstraction" if r["seed"] == runs[0]["seed"] else None)
            e = r["episodes"]
            axes[1].plot([x["env_steps"] for x in e], _smooth([x["return"] for x in e]), color=COLORS[v], alpha=0.7,
                         label=f"{v} abstraction" if r["seed"] == runs[0]["seed"] else None)
        title = s["env"] + (f" ({results['params']['game']})" if s["env"] == "minatar" else "")
        axes[0].set(xlabel="environment steps", ylabel="greedy evaluation return", title=title)
        axes[1].set(xlabel="environment steps", ylabel="training episode return (smoothed)", title=title)
        for ax in axes:
            ax.legend()
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path.name]


def _smooth(xs: list[float], k: int = 10) -> list[float]:
    out, acc = [], []
    for x in xs:
        acc = (acc + [x])[-k:]
        out.append(sum(acc) / len(acc))
    return out


def _opt_len(results: dict) -> str:
    from consumers.homomorphism.gridworld import GridWorld

    env = GridWorld(results["params"]["layout"])
    return f"{int(env.distances()[env.start])}"
