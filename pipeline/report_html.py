"""report.html: one self-contained page per job or shard set (and a side-by-side comparison).

Everything is inline: CSS in a <style>, plots as base64 PNGs (drawn in `pipeline.report_plots`),
no script and no external URL, so the file opens offline and can be mailed or attached to a
ticket. Every piece of text from the data (captions, concept names, paths, the spec) is
HTML-escaped.
"""

from __future__ import annotations

import html
import math
import time
import unicodedata

import numpy as np

from pipeline.metrics import METRIC_DOCS
from pipeline.report_plots import plot_alignment, plot_concepts, plot_projection

MAX_SAMPLE_CONCEPTS = 100  # concepts in the sample table

SET_LABELS = {"generated": "generated", "selected": "selected"}
SET_TITLES = {"generated": "every valid caption the LM wrote",
              "selected": "captions written to the shards (after dedup and balancing)"}


# ---------------------------------------------------------------- text helpers

def esc(value) -> str:
    """HTML-escaped text, control characters shown as U+FFFD."""
    s = "" if value is None else str(value)
    s = "".join("\ufffd" if unicodedata.category(c) == "Cc" and c not in "\t\n" else c for c in s)
    return html.escape(s, quote=True)


def fmt(value) -> str:
    """A metric value for people: ints with separators, floats to 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = float(value)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def fmt_delta(value) -> str:
    if value is None:
        return "—"
    if value == 0:
        return "0"
    s = f"{value:+,d}" if isinstance(value, (int, np.integer)) else f"{value:+.3g}"
    return s.replace("-", "−")


def _when(ts) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(ts)))
    except (TypeError, ValueError, OverflowError):
        return "—"


def metric_name(key: str, m: dict | None = None) -> str:
    """The metric's name with its parameter, e.g. `coverage (k ≥ 5)`."""
    m = m or {}
    if key == "coverage" and m.get("coverage_k") is not None:
        return f"coverage (≥ {m['coverage_k']} captions)"
    if key == "cluster_entropy" and m.get("cluster_k") is not None:
        return f"cluster_entropy (k = {m['cluster_k']})"
    if key == "near_duplicate_rate" and m.get("near_duplicate_threshold") is not None:
        return f"near_duplicate_rate (cos ≥ {m['near_duplicate_threshold']:g})"
    return key


def metric_note(key: str, m: dict) -> str:
    """What the reader must know about one value (sampled, on a sample of the set)."""
    if key == "near_duplicate_rate" and m.get("near_duplicate_sampled"):
        return "sampled"
    sample, n = m.get("embedding_sample"), m.get("n")
    if key in ("cluster_entropy", "near_duplicate_rate") and sample and n and sample < n:
        return f"on {sample:,} of {n:,}"
    return ""


def better_mark(better: str | None) -> str:
    return {"higher": "↑", "lower": "↓"}.get(better or "", "")


def _docs(data: dict) -> dict:
    docs = dict(METRIC_DOCS)
    docs.update(data.get("metric_docs") or {})
    return docs


def _sets(data: dict) -> list[str]:
    metrics = data.get("metrics") or {}
    return [s for s in ("generated", "selected") if s in metrics] + [s for s in metrics if s not in ("generated", "selected")]


# ---------------------------------------------------------------- HTML pieces

CSS = """
:root { --fg: #1d2330; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #fff; --accent: #2f5d8a;
        --good: #1a7f37; --bad: #b42318; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 14px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
header .kind { color: var(--accent); font-weight: 600; text-transform: uppercase; font-size: 12px; letter-spacing: .06em; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0 0; color: var(--muted); }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; word-break: break-all; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 18px 0; }
section h2 { font-size: 16px; margin: 0 0 10px; }
p.note, .muted { color: var(--muted); font-size: 13px; margin: 6px 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.metric { white-space: nowrap; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
td.doc { color: var(--muted); font-size: 13px; }
td.better { text-align: center; font-weight: 700; color: var(--accent); }
tr.group th { background: #eef2f7; color: var(--fg); font-size: 13px; }
.tag { display: inline-block; font-size: 11px; padding: 0 6px; border-radius: 8px; background: #fff4d6; color: #7a5a00;
       margin-left: 6px; font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
.good { color: var(--good); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
img.plot { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.funnel td.bar { width: 40%; }
.funnel td:first-child { white-space: nowrap; }
.grid2 .funnel td.bar, .grid2 .funnel th:last-child { display: none; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.funnel .barfill { height: 10px; background: var(--accent); border-radius: 3px; }
table.samples td.concept { white-space: nowrap; font-weight: 600; width: 1%; }
table.samples td { padding: 4px 10px; font-size: 13px; }
table.samples span.cap { display: inline; }
table.samples span.cap + span.cap::before { content: " · "; color: #98a2b3; font-weight: 700; }
details summary { cursor: pointer; font-weight: 600; }
pre { background: #f3f4f6; padding: 12px; border-radius: 6px; overflow-x: auto; font-size: 12px; line-height: 1.4; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 24px; }
"""


def _page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            "<footer>synth2 report · self-contained: no scripts, no external resources</footer>\n</main>\n</body>\n</html>\n")


def _img(png: str, id_: str, alt: str) -> str:
    """A PNG from pipeline.report_plots as an inline <img>."""
    return f'<img id="{esc(id_)}" class="plot" alt="{esc(alt)}" src="data:image/png;base64,{png}">'


def _header(data: dict, kind_label: str | None = None) -> str:
    kind = kind_label or ("Job report" if data.get("kind") == "job" else "Shard set report")
    h = data.get("spec_hash") or ""
    rows = [("source", esc(data.get("source"))),
            ("spec hash", f'<span title="{esc(h)}">{esc(h[:12]) or "—"}</span>'),
            ("created", esc(_when(data.get("created_at"))))]
    if data.get("encoder"):
        rows.append(("text encoder", esc(data["encoder"])))
    meta = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (f'<header><div class="kind">{esc(kind)}</div><h1>{esc(data.get("title", "report"))}</h1>'
            f'<dl class="meta">{meta}</dl></header>')


def metrics_table(data: dict) -> str:
    docs = _docs(data)
    sets = _sets(data)
    metrics = data.get("metrics") or {}
    labels = SET_LABELS if data.get("kind") == "job" else {"selected": "shards"}
    head = "".join(f'<th class="num" title="{esc(SET_TITLES.get(s, ""))}">{esc(labels.get(s, s))}</th>' for s in sets)
    rows = []
    for key, d in docs.items():
        ms = [metrics.get(s) or {} for s in sets]
        merged = next((m for m in ms if key in m), ms[-1] if ms else {})
        cells = []
        for m in ms:
            note = metric_note(key, m) if key in m else ""
            tag = f'<span class="tag">{esc(note)}</span>' if note else ""
            cells.append(f'<td class="num">{esc(fmt(m.get(key)))}{tag}</td>')
        rows.append(f'<tr><td class="metric">{esc(metric_name(key, merged))}</td>{"".join(cells)}'
                    f'<td class="better" title="{esc(d.get("better") or "")} is better">{better_mark(d.get("better"))}</td>'
                    f'<td class="num">{esc(d.get("range", ""))}</td><td class="doc">{esc(d.get("doc", ""))}</td></tr>')
    notes = []
    if "generated" in sets:
        notes.append("<b>generated</b>: every valid caption the LM wrote; <b>selected</b>: the captions that survived "
                     "dedup and balancing and were written to the shards.")
    if any((metrics.get(s) or {}).get("near_duplicate_sampled") for s in sets):
        notes.append("<b>sampled</b>: the near-duplicate rate was estimated from a random sample of the set.")
    sel = metrics.get("selected") or {}
    if sel.get("embedding_sample") and sel.get("n") and sel["embedding_sample"] < sel["n"]:
        notes.append(f"Vendi is exact over all {sel['n']:,} captions; cluster entropy, near duplicates and the projection "
                     f"use a uniform sample of {sel['embedding_sample']:,}.")
    if sets and not any("vendi" in (metrics.get(s) or {}) for s in sets):
        notes.append("No text encoder was given or named in the manifest: the embedding metrics are left out "
                     "(pass <code>--encoder</code>).")
    return (f'<table id="metrics" class="metrics"><thead><tr><th>metric</th>{head}<th>better</th><th class="num">range</th>'
            f'<th>meaning</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + "".join(f'<p class="note">{n}</p>' for n in notes))


def funnel_table(stats: dict) -> str:
    steps = [("requested", "captions requested"), ("valid", "valid captions"), ("after_dedup", "after dedup"),
             ("after_balance", "after balancing"), ("samples", "samples in shards")]
    steps = [(k, label) for k, label in steps if isinstance(stats.get(k), (int, float))]
    if not steps:
        return '<p class="note">No counts.</p>'
    top = max(stats[k] for k, _ in steps) or 1
    first = stats[steps[0][0]] or 0
    detail = {"valid": stats.get("dropped"), "after_dedup": stats.get("duplicates_removed")}
    rows = []
    prev = None
    for k, label in steps:
        v = stats[k]
        pct = f"{100 * v / first:.1f}%" if first else "—"
        lost = f"−{prev - v:,}" if prev is not None and prev > v else ""
        why = detail.get(k) or {}
        why_s = ", ".join(f"{esc(r)} {n:,}" for r, n in why.items()) if isinstance(why, dict) else ""
        if k == "after_balance" and stats.get("balance_method"):
            why_s = f"method {esc(stats['balance_method'])}"
        rows.append(f'<tr><td>{esc(label)}</td><td class="num">{fmt(v)}</td><td class="num">{pct}</td>'
                    f'<td class="num">{lost}</td><td class="muted">{why_s}</td>'
                    f'<td class="bar"><div class="barfill" style="width:{100 * v / top:.1f}%"></div></td></tr>')
        prev = v
    extra = []
    if stats.get("shards") is not None:
        extra.append(f"{fmt(stats['shards'])} shards")
    if stats.get("seconds") is not None:
        extra.append(f"job time {fmt(stats['seconds'])} s")
    return ('<table id="funnel" class="funnel"><thead><tr><th>step</th><th class="num">count</th>'
            '<th class="num">of first</th><th class="num">removed</th><th>why</th><th></th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            + (f'<p class="note">{" · ".join(extra)}</p>' if extra else ""))


def samples_table(samples: dict[str, list[str]]) -> str:
    if not samples:
        return '<p class="note">No captions.</p>'
    items = list(samples.items())
    note = ""
    if len(items) > MAX_SAMPLE_CONCEPTS:
        note = f'<p class="note">First {MAX_SAMPLE_CONCEPTS} of {len(items):,} concepts.</p>'
        items = items[:MAX_SAMPLE_CONCEPTS]
    rows = "".join(f'<tr><td class="concept">{esc(c)}</td><td>{"".join(f"<span class=cap>{esc(t)}</span>" for t in caps)}'
                   "</td></tr>" for c, caps in items)
    return f'<table id="samples" class="samples"><tbody>{rows}</tbody></table>{note}'


def spec_details(spec) -> str:
    if not spec:
        return ""
    import yaml

    text = yaml.safe_dump(spec, sort_keys=False, allow_unicode=True, default_flow_style=None, width=110)
    return f'<details id="spec"><summary>Job spec (YAML)</summary><pre>{esc(text)}</pre></details>'


def _section(title: str, inner: str, id_: str = "") -> str:
    ident = f' id="{esc(id_)}"' if id_ else ""
    return f"<section{ident}><h2>{esc(title)}</h2>{inner}</section>"


def _concepts_section(data: dict, id_: str = "plot-concepts", heading: str = "") -> str:
    cc = data.get("concept_counts") or {}
    job = "before_balance" in cc
    counts = {k: cc[k] for k in ("before_balance", "after_balance") if cc.get(k)}
    labels = {"before_balance": "generated (before dedup and balancing)", "after_balance": "selected (after balancing)"}
    if not job:
        labels["after_balance"] = "captions in the shards"
    png, note = plot_concepts(counts, labels, title=heading)
    if not png:
        return '<p class="note">No concept counts.</p>'
    n = len({c for s in counts.values() for c in s})
    alt = f"Caption counts per concept, {n} concepts" + (", before and after balancing" if job else "")
    bits = [f"Concepts sorted by {'generated count' if job else 'count'}, most frequent first; a caption counts once "
            "for each bank concept it shows."]
    if note:
        bits.append(note)
    return _img(png, id_, alt) + "".join(f'<p class="note">{esc(b)}</p>' for b in bits)


def _alignment_block(a: dict | None) -> str:
    png = plot_alignment([("", a)] if a else [])
    if not png:
        return '<p class="note">No prior alignment scores (shards without synthesized image embeddings).</p>'
    q = a.get("prior_alignment_quantiles") or {}
    summary = ", ".join([f"mean {fmt(a.get('prior_alignment_mean'))}", f"std {fmt(a.get('prior_alignment_std'))}"]
                        + [f"{k} {fmt(v)}" for k, v in q.items()])
    return (_img(png, "plot-alignment", "Histogram of prior alignment with mean and quantiles marked")
            + f'<p class="note">{esc(summary)} · {len(a["values"]):,} values'
            + ' · solid line: mean; dashed: p25/p50/p75; dotted: p05/p95.</p>')


def render(data: dict) -> str:
    """The report of one job or shard set as a self-contained HTML page."""
    parts = [_header(data)]
    parts.append(_section("Caption diversity and balance", metrics_table(data), "metrics-section"))
    stats = data.get("stats") or {}
    parts.append(_section("Counts", funnel_table(stats), "counts"))
    parts.append(_section("Concepts before and after balancing" if data.get("kind") == "job" else "Concepts",
                          _concepts_section(data), "concepts"))
    p = data.get("projection")
    if p and p.get("points"):
        png, note = plot_projection(p)
        alt = f"PCA of caption text embeddings, {p['points']} of {p.get('of', p['points'])} points, coloured by concept"
        inner = _img(png, "plot-projection", alt) + (f'<p class="note">{esc(note)}</p>' if note else "")
    else:
        inner = '<p class="note">No projection (no text embeddings, or fewer than 3 captions).</p>'
    parts.append(_section("Caption embeddings", inner, "projection"))
    parts.append(_section("Prior alignment", _alignment_block(data.get("alignment")), "alignment"))
    samples = data.get("samples") or {}
    per = max((len(v) for v in samples.values()), default=0)
    title = f"Sample captions (up to {per} per concept, grouped by first concept)" if per else "Sample captions"
    parts.append(_section(title, samples_table(samples), "samples-section"))
    if data.get("spec"):
        parts.append(_section("Spec", spec_details(data["spec"]), "spec-section"))
    return _page(f"synth2 report: {data.get('title', '')}", "\n".join(parts))


# ---------------------------------------------------------------- comparison

def judge(va, vb, better: str | None, rel: float = 1e-3) -> str:
    """"better" or "worse" for B against A by METRIC_DOCS' `better`; "" when no direction, or when the
    change is below `rel` of the values (noise, e.g. float16 against float32 embeddings)."""
    d = delta(va, vb)
    if d is None or better is None or abs(d) <= rel * max(abs(va), abs(vb), 1e-12):
        return ""
    return "better" if (d > 0) == (better == "higher") else "worse"


def _hint(va, vb, better: str | None) -> str:
    j = judge(va, vb, better)
    return f'<span class="{"good" if j == "better" else "bad"}">{j}</span>' if j else ""


def compare_rows(a: dict, b: dict) -> list[tuple[str, str, dict, dict]]:
    """(set, metric, metrics of A, metrics of B) for every metric of both, `selected` first."""
    docs = _docs(a) | _docs(b)
    ma, mb = a.get("metrics") or {}, b.get("metrics") or {}
    sets = [s for s in ("selected", "generated") if s in ma and s in mb]
    return [(s, k, ma[s], mb[s]) for s in sets for k in docs]


def delta(va, vb):
    if isinstance(va, bool) or isinstance(vb, bool) or not isinstance(va, (int, float)) or not isinstance(vb, (int, float)):
        return None
    return vb - va


def compare_table(a: dict, b: dict) -> str:
    docs = _docs(a) | _docs(b)
    rows, current = [], None
    for s, key, ma, mb in compare_rows(a, b):
        if s != current:
            current = s
            rows.append(f'<tr class="group"><th colspan="7">{esc(s)} captions — {esc(SET_TITLES.get(s, ""))}</th></tr>')
        d = docs[key]
        va, vb = ma.get(key), mb.get(key)
        if va is None and vb is None:
            continue
        dv = delta(va, vb)
        ta, tb = (metric_note(key, m) if key in m else "" for m in (ma, mb))
        ta, tb = (f'<span class="tag">{esc(t)}</span>' if t else "" for t in (ta, tb))
        rows.append(f'<tr><td class="metric">{esc(metric_name(key, ma if key in ma else mb))}</td>'
                    f'<td class="num">{esc(fmt(va))}{ta}</td><td class="num">{esc(fmt(vb))}{tb}</td>'
                    f'<td class="num">{esc(fmt_delta(dv))}</td><td>{_hint(va, vb, d.get("better"))}</td>'
                    f'<td class="better">{better_mark(d.get("better"))}</td><td class="doc">{esc(d.get("doc", ""))}</td></tr>')
    return ('<table id="metrics" class="metrics"><thead><tr><th>metric</th><th class="num">A</th><th class="num">B</th>'
            '<th class="num">Δ (B − A)</th><th>B is</th><th>better</th><th>meaning</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>'
            '<p class="note">Only the caption sets both sides have are compared (a shard set has only <b>selected</b>).</p>')


def render_compare(a: dict, b: dict) -> str:
    """Two reports side by side: metric deltas, both concept histograms, both alignment histograms overlaid."""
    ids = (("A", a), ("B", b))
    heads = "".join(f'<div><div class="kind">{n} · {"job" if d.get("kind") == "job" else "shard set"}</div>'
                    f'<h1>{esc(d.get("title", ""))}</h1><dl class="meta"><dt>source</dt><dd>{esc(d.get("source"))}</dd>'
                    f'<dt>spec hash</dt><dd>{esc((d.get("spec_hash") or "")[:12]) or "—"}</dd>'
                    f'<dt>created</dt><dd>{esc(_when(d.get("created_at")))}</dd></dl></div>' for n, d in ids)
    parts = [f'<header><div class="kind">Comparison</div><div class="grid2">{heads}</div></header>']
    note = "".join(f'<p class="note">{esc(line)}</p>' for line in comparison_note(a.get("comparison") or {}))
    parts.append(_section("Caption diversity and balance: A vs B", note + compare_table(a, b), "metrics-section"))
    parts.append(_section("Counts", '<div class="grid2">' + "".join(
        f"<div><h3>{n}</h3>{funnel_table(d.get('stats') or {})}</div>" for n, d in ids) + "</div>", "counts"))
    parts.append(_section("Concepts", "".join(
        f"<h3>{n}: {esc(d.get('title', ''))}</h3>{_concepts_section(d, f'plot-concepts-{n.lower()}')}" for n, d in ids),
        "concepts"))
    png = plot_alignment([(n, d.get("alignment")) for n, d in ids])
    inner = (_img(png, "plot-alignment", "Prior alignment histograms of A and B, overlaid, with means and quantiles")
             + '<p class="note">Densities, so sets of different sizes compare; solid lines: means.</p>') if png else \
        '<p class="note">Neither side has prior alignment scores.</p>'
    parts.append(_section("Prior alignment", inner, "alignment"))
    return _page(f"synth2 comparison: {a.get('title', '')} vs {b.get('title', '')}", "\n".join(parts))


def comparison_note(note: dict) -> list[str]:
    """One line per caption set: at which size both sides were measured, and which side was sampled."""
    lines = []
    for s, v in note.items():
        if v.get("subsampled"):
            lines.append(f"{s}: {v['subsampled']}'s {v['from']:,} captions sampled down to {v['n']:,} (seed "
                         f"{v['seed']}), the other side's count, so both are measured at the same size; cluster "
                         f"entropy with k = {v['cluster_k']} on both")
        else:
            lines.append(f"{s}: both sides have {v['n']:,} captions; cluster entropy with k = {v['cluster_k']} on both")
    return lines

