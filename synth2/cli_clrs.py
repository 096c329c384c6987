"""`synth2 clrs ...`: train and evaluate the CLRS encode-process-decode model (consumers/clrs).

The options of `train` and `eval` are generated from the consumer's params (consumers/clrs/params.py), so
the CLI, the consumer run and the service take the same settings with the same bounds. Scores print as
fractions in [0, 1], as the results and the consumer summary store them.
"""

from __future__ import annotations

import json

import click

from consumers.clrs.params import ClrsEvalParams, ClrsParams
from synth2.params_cli import params_command


@click.group()
def clrs() -> None:
    """CLRS-30 algorithmic reasoning: encode-process-decode models over `kind: clrs` job shards."""


@clrs.command("algorithms")
def clrs_algorithms() -> None:
    """List the registered samplers with their family and features."""
    from generators.clrs import FAMILIES, SPECS, algorithms

    for a in algorithms():
        feats = ", ".join(f"{k}:{s[0][0]}/{s[1]}/{s[2]}" for k, s in SPECS[a].items())
        click.echo(f"{a:32s} {FAMILIES.get(a, '?'):20s} {feats}")


@click.option("--threads", type=click.IntRange(1, 256), help="torch threads.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory (config.json, model.pt, ...).")
@params_command(clrs, "train", ClrsParams)
def clrs_train(params: ClrsParams, out: str, threads: int | None) -> None:
    """Train on ALGORITHM at <= 16 nodes, keep the best validation checkpoint, test on the CLRS-30 test split."""
    from consumers.clrs.job import summary
    from consumers.clrs.train import run

    try:
        res = run(params, out, threads=threads)
    except (FileNotFoundError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(format_scores(summary(res) | {"micro_f1": res["test_micro_f1"]}, res["test"]["per_feature"],
                             f"test lengths {res['test_nodes']}"))
    click.echo(f"model: {out} ({res['history']['parameters']} parameters, {res['steps']} steps, "
               f"{res['history']['train_seconds']} s)")


@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the scores as JSON here.")
@params_command(clrs, "eval", ClrsEvalParams)
def clrs_eval(params: ClrsEvalParams, out_file: str | None, as_json: bool) -> None:
    """Micro-F1 and per-feature scores of a trained model (pointer accuracy, mask F1, ...), as fractions."""
    from consumers.clrs.evaluate import evaluate_checkpoint

    try:
        res = evaluate_checkpoint(params, out=out_file)
    except (FileNotFoundError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(res, indent=1) if as_json else format_scores(
        {"algorithm": res["algorithm"], "micro_f1": res["micro_f1"], "test_trajectories": res["trajectories"]},
        res["per_feature"], res["source"]))


def format_scores(head: dict, per_feature: dict, where: str) -> str:
    lines = [f"{head['algorithm']}: micro-F1 {head['micro_f1']:.4f} on {head['test_trajectories']} trajectories ({where})"]
    for k, v in per_feature.items():
        val = f"{v['score']:.4f}" if v["metric"] != "neg_mse" else f"{v['score']:.4g}"
        lines.append(f"  {k:12s} {v['type']:22s} {v['metric']:9s} {val}")
    return "\n".join(lines)
