"""The `synth2` command: thin groups over each package's public entry points."""

from __future__ import annotations

import json
import logging
import sys

import click

from synth2 import __version__


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("synth2").setLevel(logging.INFO)
    for noisy in ("root", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="synth2")
@click.option("-v", "--verbose", is_flag=True, help="Log progress of every stage.")
def main(verbose: bool) -> None:
    """synth2: synthetic image-text training data for vision-language models.

    An LLM writes captions for a concept bank, the captions are deduplicated and rebalanced,
    a text-to-image prior turns each one into an image embedding, and the pairs are written
    as WebDataset shards (Synth², Sharifzadeh et al. 2024).
    """
    _setup_logging(verbose)


@main.group()
def spec() -> None:
    """Validate job specs and print their schema."""


@spec.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--schema-only", is_flag=True, help="Check the spec itself, not whether its models are here.")
def spec_validate(files: tuple[str, ...], schema_only: bool) -> None:
    """Check spec FILES; print each problem as `path.to.field: message (got VALUE)`.

    Model references are checked too: a local path (relative to the spec file's directory, else the current
    one) must exist, a `pkg:` file must be installed, and with HF_HUB_OFFLINE=1 a hub id must be in the cache.
    """
    from pathlib import Path

    from pipeline.model_refs import check_models, resolve_relative
    from pipeline.spec import SpecError, load_spec, spec_hash

    failed = False
    for f in files:
        try:
            s = resolve_relative(load_spec(f), Path(f).parent)
            if not schema_only and (problems := check_models(s, Path(f).parent)):
                raise SpecError(problems, f)
        except SpecError as e:
            failed = True
            click.echo(f"{f}: invalid", err=True)
            for p in e.problems:
                click.echo(f"  {p}", err=True)
        else:
            click.echo(f"{f}: ok (job {s.name!r}, kind {s.kind}, spec hash {spec_hash(s)[:12]})")
    sys.exit(1 if failed else 0)


@spec.command("schema")
def spec_schema() -> None:
    """Print the job spec's JSON schema."""
    from pipeline.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command("run")
@click.option("--spec", "spec_path", required=True, type=click.Path(dir_okay=False), help="Job spec (YAML or JSON).")
@click.option("--force", is_flag=True, help="Replace the output of a different spec in output.dir.")
@click.option("--output-dir", help="Override output.dir.")
@click.option("--local", is_flag=True, help="Run every stage in this process, without Ray.")
@click.option("--debug", is_flag=True, help="On failure, show the whole traceback (and Ray's own log lines).")
def run(spec_path: str, force: bool, output_dir: str | None, local: bool, debug: bool) -> None:
    """Run (or resume) a job; the same as `python pipeline/run.py`, which `ray job submit` runs.

    A failure prints one `error: ...` line (the same error is in output.dir/progress.json); --debug shows it whole.
    """
    from pipeline.run import main as run_main

    args = ["--spec", spec_path] + (["--force"] if force else []) + (["--local"] if local else [])
    args += ["--debug"] if debug else []
    args += ["--output-dir", output_dir] if output_dir else []
    sys.exit(run_main(args))


@main.group()
def world() -> None:
    """The embedded world: a procedural image-caption domain and its small models."""


@world.command("build")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory to build the world in.")
@click.option("--size", type=click.Choice(["tiny", "quick", "full"]), default="quick", show_default=True,
              help="quick: ≤5 min on 2 CPU cores; full: ≤30 min, better models; tiny: seconds, for tests.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every split and model.")
@click.option("--image-size", type=click.IntRange(32, 256), default=64, show_default=True, help="Image side, pixels.")
@click.option("--force", is_flag=True, help="Rebuild even if a build with these settings exists.")
def world_build(out: str, size: str, seed: int, image_size: int, force: bool) -> None:
    """Render the splits as shards, train CLIP, caption LM and prior, and measure them."""
    from generators.world.build import build_world

    logging.getLogger("generators").setLevel(logging.INFO)
    info = build_world(out, size=size, seed=seed, image_size=image_size, force=force)
    click.echo(format_world(info))


@world.command("show")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def world_show(directory: str) -> None:
    """Print the figures of a built world."""
    from pathlib import Path

    path = Path(directory) / "world.json"
    if not path.exists():
        raise click.ClickException(f"{directory} has no world.json: build it with `synth2 world build --out {directory}`")
    click.echo(format_world(json.loads(path.read_text())))


def format_world(info: dict) -> str:
    q = info["quality"]
    z, lm, pr = q["clip_zero_shot"], q["lm"], q["prior_retrieval"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:5.1f}%"  # noqa: E731
    lines = [
        f"world ({info['size']}, seed {info['seed']}): held-out compositions "
        f"{len(info['held_out_compositions'])}/48 ({100 * info['held_out_fraction']:.0f}%)",
        "  splits: " + ", ".join(f"{k} {v['samples']}" for k, v in info["splits"].items()),
        f"  CLIP zero-shot (test)      colour {pct(z['all']['colour'])}  shape {pct(z['all']['shape'])}"
        f"   held-out: colour {pct(z['held_out']['colour'])} shape {pct(z['held_out']['shape'])}",
        f"  caption LM samples         parsed {pct(lm['parse_rate'])}  on-concept {pct(lm['on_concept_rate'])}"
        f"  absent from train split {pct(lm['held_out_share'])}",
        f"  prior caption R@1 of 100   chance {pct(pr['chance'])}  true image {pct(pr['true_image']['all'])}",
    ]
    for k, v in pr.items():
        if k.startswith("prior_guidance_"):
            lines.append(f"    prior, guidance {k.rsplit('_', 1)[1]:<4}      all {pct(v['all'])}  seen {pct(v['seen'])}"
                         f"  held-out {pct(v['held_out'])}")
    px = q.get("pixel_decoder")
    if px:  # worlds built before the pixel decoder existed have none
        zs = {k: px[k]["zero_shot"]["all"] for k in ("real", "decoded_from_real_embedding", "decoded_from_prior_sample")}
        lines.append(f"  pixel decoder ({px['decoder_steps']} steps, {px['scenes']} test scenes) colour/shape/R@1:"
                     f" real {pct(zs['real']['colour'])}/{pct(zs['real']['shape'])}/{pct(px['real']['r1']['all'])}")
        lines.append(f"    decoded from true embedding {pct(zs['decoded_from_real_embedding']['colour'])}/"
                     f"{pct(zs['decoded_from_real_embedding']['shape'])}/"
                     f"{pct(px['decoded_from_real_embedding']['r1']['all'])}, from prior sample "
                     f"{pct(zs['decoded_from_prior_sample']['colour'])}/{pct(zs['decoded_from_prior_sample']['shape'])}/"
                     f"{pct(px['decoded_from_prior_sample']['r1']['all'])}")
    t = info["timings_s"]
    lines.append(f"  build time {sum(t.values()):.0f} s (" + ", ".join(f"{k} {v:.0f}" for k, v in t.items()) + ")")
    return "\n".join(lines)



@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="uvicorn worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the HTTP service (settings from the environment: `python -m serve.settings` lists them).

    Without SYNTH2_API_KEYS, a key is generated and printed once, for local use.
    """
    import os
    import secrets

    import uvicorn

    if not os.environ.get("SYNTH2_API_KEYS"):
        key = secrets.token_urlsafe(24)
        os.environ["SYNTH2_API_KEYS"] = key
        click.echo(f"SYNTH2_API_KEYS is not set; this run accepts the key:\n  {key}\n"
                   f"(export SYNTH2_API_KEY={key} for `synth2 jobs` and `synth2 pull`)", err=True)
    uvicorn.run("serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="info", proxy_headers=False)


# ---------------------------------------------------------------- command groups, one file each

from synth2.cli_analyze import analyze as _analyze  # noqa: E402
from synth2.cli_client import consumers as _consumers  # noqa: E402
from synth2.cli_client import jobs as _jobs  # noqa: E402
from synth2.cli_client import pull as _pull  # noqa: E402
from synth2.cli_report import report as _report  # noqa: E402

for _command in (_jobs, _pull, _consumers, _report, _analyze):
    main.add_command(_command)

from synth2.cli_vlm import vlm as _vlm  # noqa: E402

main.add_command(_vlm)

from synth2.cli_clrs import clrs as _clrs  # noqa: E402

main.add_command(_clrs)

from synth2.cli_eea import eea as _eea  # noqa: E402

main.add_command(_eea)

from synth2.cli_htm import htm as _htm  # noqa: E402

main.add_command(_htm)

from synth2.cli_coberl import coberl as _coberl  # noqa: E402

main.add_command(_coberl)

from synth2.cli_loop import loop as _loop  # noqa: E402

main.add_command(_loop)

from synth2.cli_explore import explore as _explore  # noqa: E402

main.add_command(_explore)


if __name__ == "__main__":
    main()
