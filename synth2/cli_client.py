"""`synth2 jobs | pull | consumers`: the service's client (serve/client.py) on the command line."""

from __future__ import annotations

import contextlib
import json
import sys

import click

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


@click.group()
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


@click.command("pull")
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
    Read the result with `contracts.shards.iter_samples(DIR)`.
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


@click.group()
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
