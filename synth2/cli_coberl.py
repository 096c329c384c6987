"""`synth2 coberl ...`: CoBERL vs its ablations on MinAtar (consumers/coberl). The options are generated from
the consumer's params models (consumers/coberl/job.py), so the CLI and the service agree."""

from __future__ import annotations

import json

import click

from consumers.coberl.job import CoBERLEvalParams, CoBERLParams
from synth2.params_cli import params_command


@click.group()
def coberl() -> None:
    """CoBERL: contrastive BERT-style masking for a transformer-LSTM agent (R2D2-style learner)."""


@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Results directory (results.json, curves.png, models/).")
@params_command(coberl, "train", CoBERLParams)
def coberl_train(params: CoBERLParams, out: str) -> None:
    """Train every --agents agent for --frames frames on --seeds seeds; print AUC and return at the budget."""
    from consumers.coberl.train import run

    res = run(params, out, lambda d, t, step: click.echo(f"[{d}/{t}] {step}", err=True))
    click.echo(f"{res['env']}, {res['frames']} frames per run ({res['seconds']} s)")
    click.echo("agent           params   AUC (mean ± std)   return at budget")
    for kind, s in res["summary"].items():
        click.echo(f"{kind:15s} {s['parameters']:7d}   {s['auc']['mean']:7.3f} ± {s['auc']['std']:.3f}    "
                   f"{s['final_eval']['mean']:7.3f} ± {s['final_eval']['std']:.3f}")
    click.echo(f"wrote {out}/results.json" + (f", {out}/curves.png" if params.plots else "") + " and models/")


@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the returns as JSON here.")
@params_command(coberl, "eval", CoBERLEvalParams)
def coberl_eval(params: CoBERLEvalParams, out_file: str | None) -> None:
    """ε-greedy returns of an agent saved by `synth2 coberl train` (a models/<agent>-seed<N> folder)."""
    from consumers.coberl.train import evaluate

    try:
        res = evaluate(params, out_file)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(res, indent=1))
