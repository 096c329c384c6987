"""`synth2 eea ...`: the equivalent-effect abstraction (consumers/homomorphism), with and without it."""

from __future__ import annotations

import json

import click

from consumers.homomorphism.job import EEAEvalParams, EEAParams
from synth2.params_cli import params_command


@click.group()
def eea() -> None:
    """Equivalent-effect abstraction: values shared by state–action pairs with the same predicted effect."""


@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Results directory (results.json, curves.png, models/).")
@params_command(eea, "train", EEAParams)
def eea_train(params: EEAParams, out: str) -> None:
    """Train the agents of --env with and/or without the abstraction; print the sample-efficiency summary."""
    from consumers.homomorphism.experiment import train

    s = train(params, out, lambda d, t, step: click.echo(f"[{d}/{t}] {step}", err=True))
    click.echo(json.dumps({k: v for k, v in s.items() if k != "planning"}, indent=1))
    for p in s.get("planning", []):
        click.echo(f"value iteration ({p['order']}, {'with' if p['abstraction'] else 'without'} abstraction): "
                   f"table {p['table_size']}, optimal after {p['sweeps_to_optimal']} sweeps / {p['backups_to_optimal']} backups")


@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the returns as JSON here.")
@params_command(eea, "eval", EEAEvalParams)
def eea_eval(params: EEAEvalParams, out_file: str | None) -> None:
    """Greedy returns of a DQN model saved by `synth2 eea train` (a models/<variant>-seed<N> folder)."""
    from consumers.homomorphism.experiment import evaluate

    try:
        res = evaluate(params, out_file)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(res, indent=1))
