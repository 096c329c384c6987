"""The `synth2` command: thin groups over each package's public entry points."""

from __future__ import annotations

import contextlib
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
def spec_validate(files: tuple[str, ...]) -> None:
    """Check spec FILES; print each problem as `path.to.field: message (got VALUE)`."""
    from pipeline.spec import SpecError, load_spec, spec_hash

    failed = False
    for f in files:
        try:
            s = load_spec(f)
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
def run(spec_path: str, force: bool, output_dir: str | None, local: bool) -> None:
    """Run (or resume) a job; the same as `python pipeline/run.py`, which `ray job submit` runs."""
    from pipeline.run import main as run_main

    args = ["--spec", spec_path] + (["--force"] if force else []) + (["--local"] if local else [])
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


# ---------------------------------------------------------------- the service's client

def _client_options(f):
    f = click.option("--key", envvar="SYNTH2_API_KEY", show_envvar=True, metavar="KEY",
                     help="API key.")(f)
    f = click.option("--url", envvar="SYNTH2_URL", show_envvar=True, default="http://127.0.0.1:8000",
                     show_default=True, help="The synth2 service.")(f)
    return f


class _Client:
    """Made on first use, so `--help` needs no key; every client error ends the command with `error: ...`."""

    def __init__(self, url: str, key: str | None) -> None:
        self.url, self.key, self._c = url, key, None

    def __call__(self):
        if self._c is None:
            from serve.client import Synth2Client

            with _client_errors():
                self._c = Synth2Client(self.url, self.key)
        return self._c

    def close(self) -> None:
        if self._c is not None:
            self._c.close()


@contextlib.contextmanager
def _client_errors():
    """A client error (service error, unreachable service, bad shard) ends the command: `error: ...`, exit 1."""
    from serve.client import ClientError

    try:
        yield
    except ClientError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)


def _when(iso: str | None) -> str:
    from datetime import datetime

    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _progress_summary(job: dict) -> str:
    """The stage the job is in, e.g. `synthesize 12/40`, or what it made when it finished."""
    stages = job.get("progress") or {}
    if not stages:
        return "-"
    current = next((k for k, v in stages.items() if v.get("status") != "SUCCEEDED"), None)
    shard = stages.get("shard", {})
    made = f", {shard['shards']} shards" if shard.get("shards") is not None else ""
    if current is None:
        return f"{shard.get('done', '?')} samples{made}" if shard else "all stages done"
    v = stages[current]
    total = v.get("total")
    return f"{current} {v.get('done', 0)}/{total if total is not None else '?'}{made}"


def _format_job(job: dict) -> str:
    lines = [f"job {job['id']}  {job['name']}  {job['status']}"]
    when = [f"created {_when(job.get('created_at'))}"]
    if job.get("started_at"):
        when.append(f"started {_when(job['started_at'])}")
    if job.get("finished_at"):
        when.append(f"finished {_when(job['finished_at'])}")
    if job.get("elapsed_s") is not None:
        when.append(f"elapsed {job['elapsed_s']:.0f} s")
    lines.append("  " + ", ".join(when))
    lines.append(f"  spec hash {job['spec_hash'][:12]}, runner {job['runner']}, attempt {job['attempts']}, "
                 f"key {job['key_id']}")
    stages = job.get("progress") or {}
    if stages:
        lines.append("  progress:")
        width = max(len(k) for k in stages)
        for k, v in stages.items():
            total = v.get("total")
            frac = f"{v.get('done', 0)}/{total}" if total is not None else f"{v.get('done', 0)}"
            pct = f" ({100 * v.get('done', 0) / total:.0f}%)" if total else ""
            extra = f", {v['shards']} shards" if v.get("shards") is not None else ""
            rate = f", {v['rate_per_s']:g}/s" if v.get("rate_per_s") else ""
            lines.append(f"    {k:<{width}}  {v.get('status', '?'):<9}  {frac}{pct}{extra}{rate}")
    counts = job.get("counts") or {}
    if counts.get("samples") is not None:
        lines.append(f"  output: {counts['samples']} samples in {counts.get('shards', '?')} shards")
    if job.get("message"):
        lines.append(f"  message: {job['message']}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    return "\n".join(lines)


@main.group()
@_client_options
@click.pass_context
def jobs(ctx: click.Context, url: str, key: str | None) -> None:
    """Submit and follow jobs on a synth2 service (`synth2 serve`).

    The service and key come from --url/--key, or SYNTH2_URL and SYNTH2_API_KEY.
    """
    ctx.obj = _Client(url, key)
    ctx.call_on_close(ctx.obj.close)


def _wait_and_report(client, job_id: str, timeout: float | None, poll: float) -> dict:
    def said(job: dict) -> None:
        click.echo(f"{job['id']}: {job['status']}" + (f" ({job['message']})" if job.get("message") else ""), err=True)

    return client.wait(job_id, timeout=timeout, poll=poll, on_change=said)


@jobs.command("submit")
@click.argument("spec_file", metavar="SPEC", type=click.Path(exists=True, dir_okay=False))
@click.option("--wait", is_flag=True, help="Wait for the job to finish; exit 1 unless it SUCCEEDED.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up waiting after this many seconds.")
@click.option("--poll", type=click.FloatRange(0.05), default=2.0, show_default=True, help="With --wait: seconds between polls.")
@click.pass_obj
def jobs_submit(client, spec_file: str, wait: bool, timeout: float | None, poll: float) -> None:
    """Queue the job in SPEC (a YAML or JSON job spec); print its id and status.

    The service validates the spec: each problem is printed as `path.to.field: message`.
    """
    with _client_errors():
        job = client().submit(spec_file)
        click.echo(f"{job['id']} {job['status']}")
        if wait:
            job = _wait_and_report(client(), job["id"], timeout, poll)
            click.echo(_format_job(job))
            sys.exit(0 if job["status"] == "SUCCEEDED" else 1)


@jobs.command("list")
@click.option("--status", type=click.Choice(["PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"],
                                            case_sensitive=False), help="Only jobs with this status.")
@click.option("--mine", is_flag=True, help="Only jobs submitted with this key.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the service's answer as JSON.")
@click.pass_obj
def jobs_list(client, status: str | None, mine: bool, limit: int, as_json: bool) -> None:
    """List jobs, newest first: id, name, status, progress, created."""
    with _client_errors():
        rows = client().list(status=status.upper() if status else None, mine=mine, limit=limit)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no jobs")
        return
    table = [("ID", "NAME", "STATUS", "PROGRESS", "CREATED")]
    table += [(j["id"], j["name"], j["status"], _progress_summary(j), _when(j.get("created_at"))) for j in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    for r in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])


@jobs.command("status")
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the service's answer as JSON.")
@click.pass_obj
def jobs_status(client, job_id: str, as_json: bool) -> None:
    """Show a job: status, times, per-stage progress, its output and error."""
    with _client_errors():
        job = client().get(job_id)
    click.echo(json.dumps(job, indent=2) if as_json else _format_job(job))


@jobs.command("cancel")
@click.argument("job_id", metavar="ID")
@click.pass_obj
def jobs_cancel(client, job_id: str) -> None:
    """Stop a PENDING or RUNNING job (only the key that submitted it may).

    Its finished shards stay valid; submitting the same spec again resumes from them.
    """
    with _client_errors():
        job = client().cancel(job_id)
    click.echo(f"{job['id']} {job['status']}" + (f" ({job['message']})" if job.get("message") else ""))


@jobs.command("logs")
@click.argument("job_id", metavar="ID")
@click.option("--tail", type=click.IntRange(0, 100_000), default=None, help="Only the last N lines.")
@click.pass_obj
def jobs_logs(client, job_id: str, tail: int | None) -> None:
    """Print a job's log (its worker's output).

    Use --tail N for the last N lines only.
    """
    with _client_errors():
        text = client().logs(job_id, tail=tail)
    click.echo(text, nl=not text.endswith("\n"))


@main.command("pull")
@click.argument("job_id", metavar="ID")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False), help="Directory to put the shards in.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True, help="Shards downloaded at once.")
@click.option("--wait", is_flag=True, help="Wait for the job to finish first.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up waiting after this many seconds.")
@click.option("--poll", type=click.FloatRange(0.05), default=2.0, show_default=True, help="With --wait: seconds between polls.")
@click.option("-q", "--quiet", is_flag=True, help="No line per shard.")
@_client_options
def pull(job_id: str, to_dir: str, workers: int, wait: bool, timeout: float | None, poll: float, quiet: bool,
         url: str, key: str | None) -> None:
    """Download a job's shards and manifest into --to DIR, verifying every sha256.

    An interrupted pull resumes from its `.part` files; shards already there are skipped.
    A job still running gives the shards finished so far: pull again later for the rest.
    Read the result with `pipeline.shards.iter_samples(DIR)`.
    """
    client = _Client(url, key)

    def shard_done(name: str, outcome: str, received: int) -> None:
        if not quiet:
            click.echo(f"  {name}: {outcome}" + (f" ({received} bytes)" if received else ""), err=True)

    try:
        with _client_errors():
            job = _wait_and_report(client(), job_id, timeout, poll) if wait else client().get(job_id)
            s = client().pull(job_id, to_dir, workers=workers, progress=shard_done)
    finally:
        client.close()
    click.echo(f"pulled {s.shards} shards ({s.samples} samples) of job {job_id} into {s.dir}: "
               f"{s.downloaded} downloaded, {s.resumed} resumed, {s.redownloaded} downloaded again, "
               f"{s.skipped} already there; {s.bytes} bytes received")
    if not s.complete:
        more = " (pull again when it finishes for the rest)" if job["status"] in ("PENDING", "RUNNING") else ""
        click.echo(f"job {job_id} is {job['status']}: these are the shards it had finished so far{more}", err=True)
    if wait and job["status"] != "SUCCEEDED":
        sys.exit(1)


# ---------------------------------------------------------------- consumer runs on the service


@main.group()
@_client_options
@click.pass_context
def consumers(ctx: click.Context, url: str, key: str | None) -> None:
    """Run the other papers' models (consumers/) as jobs on a synth2 service.

    A run is a job: `synth2 jobs logs ID` and `synth2 jobs cancel ID` work on it too.
    """
    ctx.obj = _Client(url, key)
    ctx.call_on_close(ctx.obj.close)


def _param_value(text: str):
    """`--param k=v`: V read as YAML (8 -> int, false -> bool, [a, b] -> list), else kept as text."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _format_run(run: dict) -> str:
    lines = [_format_job(run).replace(f"job {run['id']}", f"{run.get('consumer')} run {run['id']}", 1)]
    stage = next(iter((run.get("progress") or {}).values()), {})
    if stage.get("step") and run["status"] in ("PENDING", "RUNNING"):
        lines.append(f"  step: {stage['step']}")
    lines.append("  params: " + json.dumps(run.get("params"), separators=(",", ":")))
    if run.get("summary") is not None:
        lines.append("  summary: " + json.dumps(run["summary"], indent=1, default=str).replace("\n", "\n  "))
    for name, link in (run.get("files") or {}).items():
        lines.append(f"  file: {name}  {link}")
    return "\n".join(lines)


@consumers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the service's answer (with each params schema) as JSON.")
@click.pass_obj
def consumers_list(client, as_json: bool) -> None:
    """The registered consumers and their params (name, type, default)."""
    with _client_errors():
        rows = client().consumers()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for c in rows:
        click.echo(f"{c['name']}: {c['description']}")
        schema = c["params_schema"]
        required = set(schema.get("required", []))
        for k, v in schema.get("properties", {}).items():
            kind = v.get("type") or "|".join(a.get("type", "?") for a in v.get("anyOf", [])) or "?"
            default = " (required)" if k in required else f" = {json.dumps(v.get('default'))}"
            click.echo(f"  {k}: {kind}{default}" + (f"  {v['description']}" if v.get("description") else ""))


@consumers.command("run")
@click.argument("name")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A param (repeat); VALUE is read as YAML.")
@click.option("--params-file", type=click.Path(exists=True, dir_okay=False), help="Params as a YAML/JSON mapping.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit 1 unless it SUCCEEDED.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up waiting after this many seconds.")
@click.option("--poll", type=click.FloatRange(0.05), default=2.0, show_default=True, help="With --wait: seconds between polls.")
@click.pass_obj
def consumers_run(client, name: str, params: tuple[str, ...], params_file: str | None, wait: bool, timeout: float | None,
                  poll: float) -> None:
    """Queue a run of consumer NAME, e.g. `synth2 consumers run oversquash -p model=gpt2 -p points=20 --wait`.

    The service validates the params: each problem is printed as `consumer.params.FIELD: message`.
    """
    from pathlib import Path

    import yaml

    data: dict = {}
    if params_file:
        loaded = yaml.safe_load(Path(params_file).read_text())
        if not isinstance(loaded, dict):
            raise click.BadParameter("must hold a mapping of params", param_hint="--params-file")
        data.update(loaded)
    for item in params:
        k, sep, v = item.partition("=")
        if not sep or not k.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        data[k.strip()] = _param_value(v)
    with _client_errors():
        run = client().run_consumer(name, data)
        click.echo(f"{run['id']} {run['status']}")
        if wait:
            _wait_and_report(client(), run["id"], timeout, poll)
            run = client().consumer_run(run["id"], name)
            click.echo(_format_run(run))
            sys.exit(0 if run["status"] == "SUCCEEDED" else 1)


@consumers.command("status")
@click.argument("run_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the service's answer as JSON.")
@click.pass_obj
def consumers_status(client, run_id: str, as_json: bool) -> None:
    """Show a run: status, progress, params, and (when done) its summary and files."""
    with _client_errors():
        run = client().consumer_run(run_id)
    click.echo(json.dumps(run, indent=2) if as_json else _format_run(run))


@consumers.command("fetch")
@click.argument("run_id", metavar="ID")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False), help="Directory to put the files in.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish first.")
@click.option("--timeout", type=float, default=None, help="With --wait: give up waiting after this many seconds.")
@click.pass_obj
def consumers_fetch(client, run_id: str, to_dir: str, wait: bool, timeout: float | None) -> None:
    """Download the files a run wrote (results JSON, PNG plots) into --to DIR."""
    with _client_errors():
        run = _wait_and_report(client(), run_id, timeout, 2.0) if wait else client().get(run_id)
        paths = client().fetch(run_id, to_dir)
    for path in paths:
        click.echo(str(path))
    if run["status"] != "SUCCEEDED":
        click.echo(f"run {run_id} is {run['status']}: these are the files it had written so far", err=True)
        if wait:
            sys.exit(1)


# ---------------------------------------------------------------- reports

def _report_data(path: str, encoder: str | None) -> dict:
    from pipeline.report import collect
    from pipeline.storage import Store

    if not Store(path).exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    return collect(path, encoder)


def _writable_dir(path: str) -> bool:
    import os

    from pipeline.storage import Store

    store = Store(path)
    return not store.local or os.access(store.root, os.W_OK)


def _write_file(target: str, text: str) -> str:
    from pathlib import Path

    p = Path(target)
    if p.parent != Path(""):
        p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return str(p)


def _metric_lines(columns: list[tuple[str, dict]], compare: bool = False) -> list[str]:
    """A plain-text metric table: one row per metric of METRIC_DOCS, one column per caption set
    (with --compare: A, B, their difference, and whether B is better)."""
    from pipeline.metrics import METRIC_DOCS
    from pipeline.report_html import better_mark, delta, fmt, fmt_delta, judge, metric_name, metric_note

    head = ["metric", *(name for name, _ in columns)] + (["Δ (B − A)", "B is"] if compare else [])
    rows = [head]
    for key, doc in METRIC_DOCS.items():
        ms = [m for _, m in columns]
        if all(m.get(key) is None for m in ms):
            continue
        ref = next((m for m in ms if key in m), {})
        name = f"{metric_name(key, ref)} {better_mark(doc.get('better'))}".rstrip()
        cells = [fmt(m.get(key)) + (f" ({n})" if (n := metric_note(key, m)) else "") for m in ms]
        if compare:
            va, vb = ms[0].get(key), ms[1].get(key)
            cells += [fmt_delta(delta(va, vb)), judge(va, vb, doc.get("better"))]
        rows.append([name, *cells])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i == 0 or (compare and i == len(head) - 1) else c.rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]


@main.command("report")
@click.argument("path")
@click.option("--compare", "other", metavar="OTHER", help="A second job or shard directory: write a side-by-side comparison.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False),
              help="The HTML file to write (default: report.html and report.json in a writable job directory, "
                   "else ./report.html; with --compare ./compare.html).")
@click.option("--encoder", metavar="NAME",
              help="Text encoder for a shard set's embedding metrics (an open_clip name or local-dir:PATH); "
                   "default: the encoder its manifest's spec names.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON instead of a table.")
def report(path: str, other: str | None, out_file: str | None, encoder: str | None, as_json: bool) -> None:
    """Caption diversity and balance report of PATH: a job directory or any shard directory
    (a local path or an fsspec URL), as one self-contained HTML page.

    For a job directory it covers the generated captions and the selected ones (after dedup and
    balancing); for a shard directory, the shards' captions. Prints where it wrote and the metrics.
    """
    from pipeline.report import write_report
    from pipeline.report_html import render, render_compare
    from pipeline.storage import Store

    say = (lambda s: click.echo(s, err=True)) if as_json else click.echo
    try:
        data = _report_data(path, encoder)
        if other:
            data_b = _report_data(other, encoder)
            wrote = [_write_file(out_file or "compare.html", render_compare(data, data_b))]
        elif out_file is None and data["kind"] == "job" and _writable_dir(path):
            write_report(path, data)
            wrote = [Store(path).uri("report.html"), Store(path).uri("report.json")]
        else:
            wrote = [_write_file(out_file or "report.html", render(data))]
    except (OSError, ValueError, KeyError) as e:
        msg = str(e) if not isinstance(e, KeyError) else f"missing {e} in the job or shard metadata"
        click.echo(f"error: {msg}", err=True)
        sys.exit(1)
    say("wrote " + ", ".join(wrote))
    if other:
        if as_json:
            click.echo(json.dumps({"a": {"title": data["title"], "metrics": data["metrics"]},
                                   "b": {"title": data_b["title"], "metrics": data_b["metrics"]}}, indent=2, default=float))
            return
        a, b = data["metrics"], data_b["metrics"]
        for s in ("selected", "generated"):
            if s in a and s in b:
                say(f"\n{s} captions: A = {data['title']}, B = {data_b['title']}")
                for line in _metric_lines([("A", a[s]), ("B", b[s])], compare=True):
                    say("  " + line)
        return
    if as_json:
        click.echo(json.dumps(data["metrics"], indent=2, default=float))
        return
    say(f"\n{data['title']}")
    for line in _metric_lines(list(data["metrics"].items())):
        say("  " + line)


@main.group()
def analyze() -> None:
    """Analyses of models (consumers/)."""


@analyze.command("collapse")
@click.option("--model", "model_id", required=True, help="Causal LM: a local directory or a hub id (AutoModelForCausalLM).")
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
def analyze_collapse(model_id: str, out_dir: str, sep_every: int, max_len: int | None, points: int, dtypes: str,
                     device: str, no_behaviour: bool, no_synthetic: bool, synthetic_max_n: int, no_plots: bool) -> None:
    """Representational collapse and over-squashing of a causal LM ("Transformers need glasses!"):
    collapse curves per precision, input sensitivity, separators, counting/copying, synthetic check."""
    from consumers.oversquash.analysis import DTYPES, grid, run_analysis

    names = tuple(d.strip() for d in dtypes.split(",") if d.strip())
    if "float32" not in names or set(names) - set(DTYPES):
        raise click.BadParameter(f"a comma-separated subset of {', '.join(DTYPES)} that includes float32", param_hint="--dtypes")
    res = run_analysis(model_id, out_dir, sep_every=sep_every, max_len=max_len, points=points, dtypes=names, device=device,
                       do_behaviour=not no_behaviour, do_synthetic=not no_synthetic, plots=not no_plots,
                       synthetic_ns=grid(synthetic_max_n, 24))
    click.echo("wrote " + ", ".join(res["files"]))
    click.echo(json.dumps(res["summary"], indent=1, default=str))


# ---------------------------------------------------------------- the VLM

from synth2.cli_vlm import vlm as _vlm  # noqa: E402

main.add_command(_vlm)

from synth2.cli_clrs import clrs as _clrs  # noqa: E402

main.add_command(_clrs)


if __name__ == "__main__":
    main()
