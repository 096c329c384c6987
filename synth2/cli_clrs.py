"""`synth2 clrs ...`: train and evaluate the CLRS encode-process-decode model (consumers/clrs)."""

from __future__ import annotations

import json

import click


def _nodes(value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"comma-separated node counts, e.g. 4,7,11,13,16 (got {value!r})") from None
    if not out or min(out) < 2 or max(out) > 1024:
        raise click.BadParameter(f"node counts between 2 and 1024 (got {value!r})")
    return out


def _algorithm(ctx, param, value: str) -> str:
    from generators.clrs import algorithms

    if value not in algorithms():
        raise click.BadParameter(f"unknown CLRS algorithm {value!r}; known: {', '.join(algorithms())}")
    return value


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


@clrs.command("train")
@click.option("--algorithm", required=True, callback=_algorithm, help="One CLRS algorithm (single-task training).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Model directory (config.json, model.pt, ...).")
@click.option("--data", help="Output directory of a `kind: clrs` job; without it trajectories come straight from the samplers.")
@click.option("--processor", type=click.Choice(["triplet_gmpnn", "mpnn", "pgn"]), default="triplet_gmpnn", show_default=True)
@click.option("--hidden", type=click.IntRange(8, 1024), default=128, show_default=True)
@click.option("--steps", type=click.IntRange(1, 10_000_000), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(1e-6, 1.0), default=1e-3, show_default=True)
@click.option("--teacher-forcing", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Probability that a step reads the true hints instead of its own predictions.")
@click.option("--eval-every", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--max-seconds", type=float, help="Stop training after this long (the best checkpoint is kept).")
@click.option("--train-count", default=1000, show_default=True, help="Without --data: training trajectories.")
@click.option("--train-nodes", default="4,7,11,13,16", show_default=True, help="Without --data: training node counts.")
@click.option("--test-nodes", default="64", show_default=True, help="Without --data: test node counts.")
@click.option("--seed", default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), help="torch threads.")
def clrs_train(algorithm: str, out: str, data: str | None, processor: str, hidden: int, steps: int, batch_size: int, lr: float,
               teacher_forcing: float, eval_every: int, max_seconds: float | None, train_count: int, train_nodes: str,
               test_nodes: str, seed: int, threads: int | None) -> None:
    """Train on ALGORITHM at <= 16 nodes, keep the best validation checkpoint, test at 64 nodes."""
    from consumers.clrs.train import run

    res = run(algorithm, out, data=data, processor=processor, hidden=hidden, steps=steps, batch_size=batch_size, lr=lr,
              teacher_forcing=teacher_forcing, eval_every=eval_every, max_seconds=max_seconds, seed=seed, threads=threads,
              **({} if data else {"train_count": train_count, "train_nodes": _nodes(train_nodes),
                                  "test_nodes": _nodes(test_nodes)}))
    click.echo(_summary(res["test"], algorithm, res["test_nodes"]))
    click.echo(f"model: {out} ({res['history']['parameters']} parameters, {res['steps']} steps, "
               f"{res['history']['train_seconds']} s)")


@clrs.command("eval")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--data", help="Output directory of a `kind: clrs` job (its --split); without it, fresh samples.")
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@click.option("--count", default=32, show_default=True, help="Without --data: trajectories.")
@click.option("--nodes", default=64, show_default=True, help="Without --data: node count.")
@click.option("--seed", default=1, show_default=True)
@click.option("--batch-size", default=4, show_default=True)
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the scores as JSON here.")
@click.option("--json", "as_json", is_flag=True)
def clrs_eval(model_dir: str, data: str | None, split: str, count: int, nodes: int, seed: int, batch_size: int,
              out_file: str | None, as_json: bool) -> None:
    """Micro-F1 and per-feature scores of a trained model (pointer accuracy, mask F1, ...)."""
    from consumers.clrs.evaluate import evaluate_checkpoint

    try:
        res = evaluate_checkpoint(model_dir, data, split=split, count=count, nodes=nodes, seed=seed, batch_size=batch_size,
                                  out=out_file)
    except (FileNotFoundError, KeyError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(res, indent=1) if as_json else _summary(res, res["algorithm"], res["source"]))


def _summary(res: dict, algorithm: str, where) -> str:
    lines = [f"{algorithm}: micro-F1 {100 * res['micro_f1']:.2f} on {res['trajectories']} trajectories ({where})"]
    for k, v in res["per_feature"].items():
        val = f"{100 * v['score']:.2f}" if v["metric"] != "neg_mse" else f"{-v['score']:.4g}"
        lines.append(f"  {k:12s} {v['type']:22s} {v['metric']:9s} {val}")
    return "\n".join(lines)
