"""`synth2 loop`: the closed generation loop (vlm/loop.py); its options come from `vlm.loop_job.LoopParams`."""

from __future__ import annotations

import click

from synth2.params_cli import params_options
from vlm.loop_job import LoopParams


@click.command("loop")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Loop directory (loop.json, plots, rounds).")
@click.option("--jobs-dir", type=click.Path(file_okay=False),
              help="Where the synthetic jobs go (default: OUT/jobs); share it between arms and seeds to reuse jobs.")
@params_options(LoopParams)
def loop(params: LoopParams, out: str, jobs_dir: str | None) -> None:
    """Train the VLM, weight the next synthetic job by its validation errors per concept, train again.

    \b
    synth2 loop --world world --out runs/loop                       # 3 rounds, error-weighted
    synth2 loop --world world --out runs/loop-uniform --strategy uniform   # the baseline, same budget
    """
    import logging

    from vlm.loop import run_loop
    from vlm.loop_job import config, summary

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = run_loop(config(params, out, jobs_dir),
                     progress=lambda done, total=None, step=None: click.echo(f"[{done}/{total}] {step}", err=True))
    click.echo("| round | synthetic pairs | test held-out comp. | test CIDEr | job |")
    click.echo("|---|---|---|---|---|")
    for r in summary(state)["rounds"]:
        click.echo(f"| {r['round']} | {r['synthetic_pairs']} | {r['test_held_out_composition'] or 0:.3f} | "
                   f"{r['test_cider']:.3f} | {r['job_id'][:12]} |")
    click.echo(f"wrote {out}/loop.json, {out}/loop.png and one round-R.png per round")
