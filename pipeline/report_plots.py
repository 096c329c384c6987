"""The report's plots: matplotlib figures drawn to base64 PNGs for report.html.

Drawn by matplotlib's Agg canvas through the object API (no pyplot: no global state, nothing to
close). `pipeline.report_html` embeds the PNGs; every label from the data is cut short and has
`$` escaped so matplotlib does not read it as mathtext.
"""

from __future__ import annotations

import base64
import io
import unicodedata
import warnings

import numpy as np

MAX_CONCEPT_BARS = 100  # concepts drawn one bar each; beyond, the most and least frequent
EDGE_CONCEPTS = 40  # concepts shown at each end beyond MAX_CONCEPT_BARS
MAX_LEGEND = 12  # concepts with a legend entry in the projection
LABEL_CHARS = 28  # axis labels are cut to this many characters
PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
           "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"]
SERIES = ("#9db4cf", "#2f5d8a")  # before / after balancing (light / dark)
COMPARE = ("#4e79a7", "#e15759")  # A / B


def _label(s: str) -> str:
    """A concept name as a matplotlib label: short, and `$` not read as mathtext."""
    s = "".join("\ufffd" if unicodedata.category(c) == "Cc" else c for c in str(s))
    s = s if len(s) <= LABEL_CHARS else s[:LABEL_CHARS - 1] + "…"
    return s.replace("$", r"\$")


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _png(fig) -> str:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing glyphs in exotic concept names
        fig.savefig(buf, format="png", facecolor="white")
    fig.clear()
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _style(ax, integer_y: bool = False) -> None:
    if integer_y:
        from matplotlib.ticker import MaxNLocator

        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)


def concept_order(counts: dict[str, dict[str, int]], first: str) -> tuple[list[str], str]:
    """Concepts sorted by the `first` series (descending, then name), cut to the most and least
    frequent beyond MAX_CONCEPT_BARS; and a note saying what was cut."""
    keys = sorted({c for series in counts.values() for c in series})
    ref = counts.get(first) or {}
    keys.sort(key=lambda c: (-ref.get(c, 0), c))
    if len(keys) <= MAX_CONCEPT_BARS:
        return keys, ""
    note = (f"{len(keys):,} concepts: showing the {EDGE_CONCEPTS} most and the {EDGE_CONCEPTS} least "
            f"frequent ({first.replace('_', ' ')}); {len(keys) - 2 * EDGE_CONCEPTS:,} in between are left out.")
    return keys[:EDGE_CONCEPTS] + [""] + keys[-EDGE_CONCEPTS:], note


def plot_concepts(counts: dict[str, dict[str, int]], labels: dict[str, str], colours=SERIES, title: str = "") -> tuple[str, str]:
    """Grouped bars of caption counts per concept, one series per entry of `counts`; returns (png, note)."""
    series = [s for s in counts if counts[s]]
    if not series:
        return "", "no concept counts"
    keys, note = concept_order(counts, series[0])
    n = len(keys)
    width = min(10.4, max(4.0 + 0.6 * n, 0.16 * n + 1.5))  # 10.4 in at 110 dpi: the page's content width
    longest = max((len(_label(k)) for k in keys), default=4)
    rotate = n > 8 or longest > 12
    fig = _figure(width, 3.2 + (0.065 * longest if rotate else 0.3))
    ax = fig.subplots()
    x = np.arange(n)
    bw = 0.8 / len(series)
    if len(series) == 1:
        colours = colours[1:] + colours[:1]  # one series: the dark colour
    for j, s in enumerate(series):
        vals = [counts[s].get(k, 0) if k else 0 for k in keys]
        ax.bar(x - 0.4 + bw * (j + 0.5), vals, bw, label=labels.get(s, s), color=colours[j % len(colours)], linewidth=0)
    ax.set_xticks(x)
    fs = 9 if n <= 30 else 8 if n <= 50 else 7 if n <= 75 else 6
    ax.set_xticklabels([_label(k) if k else "⋯" for k in keys], rotation=90 if rotate else 0, fontsize=fs)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylabel("captions")
    if title:
        ax.set_title(title, fontsize=11, loc="left")
    ax.legend(frameon=False, fontsize=9, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=len(series))
    ax.margins(y=0.05)
    _style(ax, integer_y=True)
    return _png(fig), note


def plot_projection(p: dict) -> tuple[str, str]:
    """Scatter of the 2-D projection, coloured by first concept; returns (png, note)."""
    xs, ys, cs = np.asarray(p["x"], float), np.asarray(p["y"], float), [str(c) for c in p["concept"]]
    names = sorted(set(cs))
    legend = len(names) <= MAX_LEGEND
    if legend:
        colour = {c: PALETTE[i] for i, c in enumerate(names)}
    else:
        from matplotlib import colormaps

        cmap = colormaps["turbo"]
        colour = {c: cmap(0.05 + 0.9 * i / max(1, len(names) - 1)) for i, c in enumerate(names)}
    fig = _figure(9.0 if legend else 7.5, 5.6)
    ax = fig.subplots()
    order = np.random.default_rng(0).permutation(len(xs))  # no concept drawn wholly on top
    size = 22 if len(xs) <= 300 else 10 if len(xs) <= 1500 else 6
    ax.scatter(xs[order], ys[order], s=size, c=[colour[cs[i]] for i in order], alpha=0.75, linewidths=0)
    ev = p.get("explained_variance") or []
    ax.set_xlabel("PC1" + (f" ({100 * ev[0]:.1f}% of variance)" if len(ev) > 0 else ""))
    ax.set_ylabel("PC2" + (f" ({100 * ev[1]:.1f}% of variance)" if len(ev) > 1 else ""))
    ax.set_title(f"PCA of caption text embeddings, {p.get('points', len(xs)):,} of {p.get('of', len(xs)):,} points",
                 fontsize=11, loc="left")
    if legend:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=colour[c], label=_label(c)) for c in names]
        ax.legend(handles=handles, frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title="first concept", title_fontsize=8)
        note = ""
    else:
        note = f"Coloured by first concept ({len(names):,} concepts: too many for a legend; similar names get similar colours)."
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(fig), note


def plot_alignment(items: list[tuple[str, dict]], colours=COMPARE) -> str:
    """Histogram(s) of prior alignment (cosine text ↔ synthesized image embedding). One set: its mean
    and quantiles marked, and named on the top axis; several: overlaid densities, each mean marked."""
    items = [(name, a) for name, a in items if a and a.get("values")]
    if not items:
        return ""
    allv = np.concatenate([np.asarray(a["values"], float) for _, a in items])
    # The axis spans the 0.5th..100th percentile (a few low outliers would squeeze the bulk into
    # a few bins); values below it are counted in the first bin, and the plot says how many.
    lo = min(float(np.quantile(np.asarray(a["values"], float), 0.005)) for _, a in items)
    hi = float(allv.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 0.01, hi + 0.01
    pad = 0.03 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    clipped = int((allv < lo).sum())
    bins = np.linspace(lo, hi, int(np.clip(np.sqrt(len(allv)), 10, 60)) + 1)
    fig = _figure(10.5, 3.4)
    ax = fig.subplots()
    single = len(items) == 1
    for j, (name, a) in enumerate(items):
        v = np.clip(np.asarray(a["values"], float), lo, hi)
        ax.hist(v, bins=bins, color=SERIES[0] if single else colours[j], alpha=1.0 if single else 0.45,
                label=None if single else f"{name} (n = {len(v):,})", density=not single)
    marks: list[tuple[float, str]] = []
    for j, (name, a) in enumerate(items):
        colour = SERIES[1] if single else colours[j]
        if single:
            for qn, v in (a.get("prior_alignment_quantiles") or {}).items():
                ax.axvline(v, color=colour, linestyle=":" if qn in ("p05", "p95") else "--", linewidth=1)
                marks.append((v, qn))
        if a.get("prior_alignment_mean") is not None:
            m = a["prior_alignment_mean"]
            ax.axvline(m, color="#c0392b" if single else colour, linewidth=2, label=f"{name} mean {m:.3f}".strip())
            marks.append((m, "mean"))
    ax.set_xlim(lo, hi)
    if single and marks:
        top = ax.secondary_xaxis("top")
        top.set_xticks([v for v, _ in marks], labels=[n for _, n in marks], fontsize=7, rotation=90)
        top.tick_params(length=3, pad=1)
        top.spines["top"].set_visible(False)
    ax.set_xlabel("cosine(caption text embedding, synthesized image embedding)")
    ax.set_ylabel("captions" if single else "density")
    ax.legend(frameon=False, fontsize=8, loc="upper left", ncols=1)
    if clipped:
        ax.text(0.0, -0.22, f"{clipped:,} values below {lo:.3f} counted in the first bin", transform=ax.transAxes,
                fontsize=7, color="#667085", va="top")
    _style(ax, integer_y=single)
    return _png(fig)
