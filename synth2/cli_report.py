"""`synth2 report`: a job's caption/diversity report as text, JSON or HTML (pipeline/report.py)."""

from __future__ import annotations

import json
import sys

import click

# ---------------------------------------------------------------- reports

def _report_data(path: str, encoder: str | None) -> dict:
    from contracts.storage import Store
    from pipeline.report import collect

    if not Store(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return collect(path, encoder)


def _writable_dir(path: str) -> bool:
    import os

    from contracts.storage import Store

    store = Store(path)
    return not store.local or os.access(store.root, os.W_OK)


def _write_file(target: str, text: str) -> str:
    from pathlib import Path

    p = Path(target)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return str(p)


def _metric_lines(columns: list[tuple[str, dict]], compare: bool = False) -> list[str]:
    """A plain-text metric table: one row per metric of METRIC_DOCS, one column per caption set
    (with --compare: A, B, their difference, and whether B is better)."""
    from pipeline.metrics import METRIC_DOCS
    from pipeline.report_html import better_mark, delta, fmt, fmt_delta, judge, metric_name, metric_note

    head = ["metric", *(name for name, _ in columns)] + (["Δ (B − A)", "B is"] if compare else [])
    rows = [head]
    for key, doc in METRIC_DOCS.items():
        ms = [m for _, m in columns]
        if all(m.get(key) is None for m in ms):
            continue
        ref = next((m for m in ms if key in m), {})
        name = f"{metric_name(key, ref)} {better_mark(doc.get('better'))}".rstrip()
        cells = [fmt(m.get(key)) + (f" ({n})" if (n := metric_note(key, m)) else "") for m in ms]
        if compare:
            va, vb = ms[0].get(key), ms[1].get(key)
            cells += [fmt_delta(delta(va, vb)), judge(va, vb, doc.get("better"))]
        rows.append([name, *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i == 0 or (compare and i == len(head) - 1) else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


@click.command("report")
@click.argument("path")
@click.option("--compare", "other", metavar="OTHER", help="A second job or shard directory: write a side-by-side comparison.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: report.html and report.json in a writable job directory, "
                   "else ./report.html; with --compare ./compare.html).")
@click.option("--encoder", metavar="NAME",
              help="Text encoder for a shard set's embedding metrics (an open_clip name or local-dir:PATH); "
                   "default: the encoder its manifest's spec names.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
def report(path: str, other: str | None, out_file: str | None, encoder: str | None, as_json: bool) -> None:
    """Caption diversity and balance report of PATH: a job directory or any shard directory
    (a local path or an fsspec URL), as one self-contained HTML page.

    For a job directory it covers the generated captions and the selected ones (after dedup and
    balancing); for a shard directory, the shards' captions. Prints where it wrote and the metrics.
    """
    from contracts.storage import Store
    from pipeline.report import write_report
    from pipeline.report_html import render, render_compare

    say = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    try:
        if other:
            from pipeline.report import compare

            data, data_b = compare(path, other, encoder)  # both at the same size (the larger one sampled)
            wrote = [_write_file(out_file or "compare.html", render_compare(data, data_b))]
        else:
            data = _report_data(path, encoder)
            if out_file is None and data["kind"] == "job" and _writable_dir(path):
                write_report(path, data)
                wrote = [Store(path).uri("report.html"), Store(path).uri("report.json")]
            else:
                wrote = [_write_file(out_file or "report.html", render(data))]
    except (OSError, ValueError, KeyError) as e:
        msg = str(e) if not isinstance(e, KeyError) else f"missing {e} in the job or shard metadata"
        click.echo(f"error: {msg}", err=True)
        sys.exit(1)
    say("wrote " + ", ".join(wrote))
    if other:
        if as_json:
            click.echo(json.dumps({"a": {"title": data["title"], "metrics": data["metrics"]},
                                   "b": {"title": data_b["title"], "metrics": data_b["metrics"]},
                                   "comparison": data["comparison"]}, indent=2, default=float))
            return
        from pipeline.report_html import comparison_note

        for line in comparison_note(data["comparison"]):
            say(line)
        a, b = data["metrics"], data_b["metrics"]
        for s in ("selected", "generated"):
            if s in a and s in b:
                say(f"\n{s} captions: A = {data['title']}, B = {data_b['title']}")
                for line in _metric_lines([("A", a[s]), ("B", b[s])], compare=True):
                    say("  " + line)
        return
    if as_json:
        click.echo(json.dumps(data["metrics"], indent=2, default=float))
        return
    say(f"\n{data['title']}")
    for line in _metric_lines(list(data["metrics"].items())):
        say("  " + line)
