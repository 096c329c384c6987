"""`synth2 explore ...`: semantic exploration from vision-language representations (consumers/exploration). The
options are generated from the consumer's params models (consumers/exploration/job.py), so the CLI and the
service agree."""

from __future__ import annotations

import json

import click

from consumers.exploration.job import ExploreEvalParams, ExploreParams
from synth2.params_cli import params_command, set_torch_threads


@click.group()
def explore() -> None:
    """Exploration driven by novelty in CLIP, VLM, caption, pixel or random-conv embeddings (Tam et al. 2022)."""


@click.option("--threads", type=click.IntRange(1, 256), help="torch threads.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run directory (OUT/<condition>/seed<N>/, results.json, coverage.png).")
@params_command(explore, "train", ExploreParams)
def explore_train(params: ExploreParams, out: str, threads: int | None) -> None:
    """Train every embedding x novelty pair (and the random policy) for --steps environment steps per seed."""
    from consumers.exploration.train import run

    set_torch_threads(threads)
    res = run(params, out, progress=None)
    click.echo(table(res["summary"]))
    click.echo(f"wrote {out}/results.json, {out}/coverage.png and a folder per condition and seed")


@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the results as JSON here.")
@params_command(explore, "eval", ExploreEvalParams)
def explore_eval(params: ExploreEvalParams, out_file: str | None, as_json: bool) -> None:
    """Distinct objects and rooms per episode of one trained policy, on its layout or on new ones."""
    from pathlib import Path

    from consumers.exploration.train import evaluate, load_policy

    try:
        policy, info = load_policy(params.model)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    layout = info["layout_seed"] if params.layouts == "same" else None
    res = {"model": params.model, "condition": info["condition"],
           **evaluate(policy, info["env"], layout, episodes=params.episodes, seed=params.seed)}
    if out_file:
        Path(out_file).write_text(json.dumps(res, indent=1))
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"{res['condition']} ({res['layout']} layout, {res['episodes']} episodes): "
                   f"{res['objects_per_episode']:.2f} objects and {res['rooms_per_episode']:.2f} rooms per episode, "
                   f"success {res['success_rate']:.2f}")


def table(summary: dict) -> str:
    def cell(v: dict) -> str:
        return "-" if v["mean"] is None else f"{v['mean']:.2f}±{v['std']:.2f}"

    lines = [f"{'condition':22s} {'obj/episode':>12s} {'rooms/ep':>11s} {'distinct obj':>13s} {'first solved':>16s}"]
    for name, r in summary.items():
        lines.append(f"{name:22s} {cell(r['objects_per_episode']):>12s} {cell(r['rooms_per_episode']):>11s} "
                     f"{cell(r['distinct_objects']):>13s} {cell(r['first_solved_step']):>16s}")
    return "\n".join(lines)
