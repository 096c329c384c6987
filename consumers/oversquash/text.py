"""The console form of an analysis summary: a few aligned lines a reader can take in at once
(the whole summary stays in collapse.json, and `synth2 analyze collapse --json` prints it)."""

from __future__ import annotations

from collections.abc import Mapping


def _n(v) -> str:
    return "-" if v is None else str(v)


def _g(v) -> str:
    return v if isinstance(v, str) else "-" if v is None else f"{v:.3g}"


def summary_lines(summary: Mapping) -> list[str]:
    """Collapse per probe family and position alignment (float32 L2 at the shortest and longest n,
    the n from which bf16/fp16 make the pair bit-identical, the separators' L2 gain), then input
    sensitivity, counting/copying accuracy and the synthetic check per positional encoding."""
    rows = [("family", "align", "f32 L2 first", "f32 L2 last", "bf16 same from n", "fp16 same from n", "sep L2 x")]
    for fam, by_align in summary.get("families", {}).items():
        for align, f in by_align.items():
            ratio = (f.get("sep_ratio_at") or {}).get("f32_l2_ratio")
            rows.append((fam, align, f"{_g(f.get('f32_l2_first'))} (n={_n(f.get('n_first'))})",
                         f"{_g(f.get('f32_l2_last'))} (n={_n(f.get('n_last'))})",
                         _n(f.get("bfloat16_identical_from_n")), _n(f.get("float16_identical_from_n")), _g(ratio)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    for label, s in summary.get("sensitivity", {}).items():
        out.append(f"sensitivity ({label}): first/last position {_g(s.get('first_over_last'))} over {_n(s.get('length'))} tokens")
    for label, b in summary.get("behaviour", {}).items():
        acc = {k: (v.get("accuracy") if isinstance(v, Mapping) else v) for k, v in b.items()}
        out.append(f"behaviour ({label}): " + ", ".join(f"{k} {_g(v)}" for k, v in acc.items()))
    for key, title in (("synthetic", "synthetic check"), ("synthetic_input_pe", "synthetic check, PE on the input")):
        if summary.get(key):
            out.append(f"{title}: " + ", ".join(
                f"{pe} {'collapsed' if s.get('collapsed') else 'kept apart'}" for pe, s in summary[key].items()))
    return out
