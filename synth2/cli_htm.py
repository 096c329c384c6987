"""`synth2 htm ...`: Hierarchical Transformer Memory vs full attention vs LSTM (consumers/htm). The options
are generated from the consumer's params models (consumers/htm/job.py), so the CLI and the service agree."""

from __future__ import annotations

import json

import click

from consumers.htm.job import HTMEvalParams, HTMParams
from synth2.params_cli import params_command, set_torch_threads


@click.group()
def htm() -> None:
    """Hierarchical Transformer Memory: long-horizon recall over episodes of shard embeddings."""


@click.option("--threads", type=click.IntRange(1, 256), help="torch threads.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory (one model folder per model, results.json, accuracy.png).")
@params_command(htm, "train", HTMParams)
def htm_train(params: HTMParams, out: str, threads: int | None) -> None:
    """Train the chosen models at --length and evaluate each at --eval-multiples of it."""
    from consumers.htm.train import run

    set_torch_threads(threads)
    res = run(params, out, progress=None)
    click.echo(_table(res))
    click.echo(f"wrote {out}/results.json, {out}/accuracy.png and a model folder per model")


@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the results as JSON here.")
@params_command(htm, "eval", HTMEvalParams)
def htm_eval(params: HTMEvalParams, out_file: str | None, as_json: bool) -> None:
    """Accuracy of one trained model on fresh episodes of --data at --lengths."""
    from pathlib import Path

    from consumers.htm.tasks import EmbeddingPool
    from consumers.htm.train import evaluate, load_model

    try:
        model, info = load_model(params.model)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    lengths = params.lengths or [info["length"] * m for m in (1, 4, 10)]
    pool = EmbeddingPool.load(params.data)
    evals = [evaluate(model, info["task"], pool, n, episodes_n=params.episodes, choices=info["choices"], seed=params.seed)
             for n in lengths]
    res = {"model": params.model, "kind": info["kind"], "task": info["task"], "train_length": info["length"],
           "data": params.data, "eval": evals}
    if out_file:
        Path(out_file).write_text(json.dumps(res, indent=1))
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        for e in evals:
            click.echo(f"{info['kind']:5s} {info['task']} length {e['length']:6d}: accuracy {e['accuracy']:.3f} "
                       f"(chance {e['chance']:.3f}, {e['decisions']} decisions)")


def _table(res: dict) -> str:
    lines = [f"{res['task']}: trained at {res['train_length']} steps, chance {res['chance']:.3f}",
             "model  params  " + "  ".join(f"{n:>6d}" for n in res["lengths"])]
    for kind, r in res["models"].items():
        lines.append(f"{kind:5s} {r['parameters']:7d}  " + "  ".join(f"{e['accuracy']:6.3f}" for e in r["eval"]))
    return "\n".join(lines)
