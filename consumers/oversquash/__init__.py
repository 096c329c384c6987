"""Representational collapse and over-squashing analysis of causal LMs.

After "Transformers need glasses! Information over-squashing in language tasks" (Barbero et al.,
NeurIPS 2024): the last-token representations of `1…1` (n ones) and `1…1` (n+1 ones) get arbitrarily
close as n grows, low precision makes them identical, and the last token's sensitivity to the inputs
is uneven over positions. Separators ("glasses", a comma every k digits) keep the sequences apart.

Entry points: `analysis.run_analysis` (any HF causal LM; `synth2 analyze collapse`),
`synthetic.synthetic_check` (one attention layer, five positional encodings), `tiny.build_tiny_gpt2`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_analysis", "synthetic_check"]


def __getattr__(name: str) -> Any:
    """Import torch only when an entry point is used: the service imports `consumers.oversquash.job`
    (the params model) to validate requests, and must not load torch for that."""
    if name == "run_analysis":
        from consumers.oversquash.analysis import run_analysis

        return run_analysis
    if name == "synthetic_check":
        from consumers.oversquash.synthetic import synthetic_check

        return synthetic_check
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
