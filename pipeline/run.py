"""Entry point of a synth2 job, for `ray job submit` and for a local run.

    ray job submit --working-dir . -- python pipeline/run.py --spec configs/demo.yaml
    RAY_ADDRESS=HOST:6379 python pipeline/run.py --spec ... # joins that cluster
    python pipeline/run.py --spec configs/demo.yaml        # joins a running `ray start`, else starts a local Ray
    synth2 run --spec configs/demo.yaml                    # the same thing
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # not pipeline/, whose modules must not shadow others

log = logging.getLogger("synth2.run")


def find_cluster(address: str | None = None) -> str | None:
    """The Ray cluster to join: `address`, else RAY_ADDRESS, else the one a `ray start` on this
    machine recorded (its default temp dir); None when there is none."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        return address
    from ray._private.services import find_bootstrap_address  # what `ray.init()` itself consults

    return find_bootstrap_address(None)


def quiet_ray() -> None:
    """Keep Ray's own chatter out of a job's output: Ray Data's progress bars and per-dataset lines, Ray's log
    lines below ERROR (Ray Data's not at all: a failure is reported once, by the caller). The driver's own log
    lines still show; the workers' stay in Ray's log files (init_ray(quiet=True) does not copy them here)."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
    logging.getLogger("ray").setLevel(logging.ERROR)
    _drop_raylet_prints()
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # it logs the job's failure again, with Ray's frames


def _drop_raylet_prints() -> None:
    """The driver prints every error the raylet publishes (a task retried, an actor that died, with its whole
    traceback) to stdout, whatever `log_to_driver` says; quiet, they go to the log at DEBUG instead. The job's
    own failure still reaches the caller as an exception."""
    import ray._private.worker as worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "_synth2_quiet", False):
        return

    def print_to_stdstream(data, ignore_prefix: bool, *args, **kwargs):
        if data.get("pid") == "raylet":
            log.debug("ray: %s", " ".join(data.get("lines", [])))
            return None
        return original(data, ignore_prefix, *args, **kwargs)

    print_to_stdstream._synth2_quiet = True
    worker.print_to_stdstream = print_to_stdstream


def _loopback_only() -> None:
    """Keep a single-machine Ray's servers on loopback. Without this Ray swaps 127.0.0.1 for the
    machine's routable address and its servers listen on every interface. Ray reads the switch
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER` once, when it is imported, so it is also turned off where
    `ray.init` looks it up (`ray._private.ray_constants`; there is no public API); the environment
    variable reaches the servers and workers Ray starts. Only for a Ray of our own: a driver joining
    a cluster must report its routable address."""
    from ray._private import ray_constants

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(address: str | None = None, num_cpus: int | None = None, local: bool = False,
             quiet: bool = False) -> str:
    """Join the cluster this job was submitted to, or a running `ray start` (RAY_ADDRESS or the
    machine's current cluster), or else start a local Ray with every server on loopback. Returns
    "cluster", "local", or "running" (this process had joined one already). `local`, or a
    `num_cpus` without an address (the size of a Ray of one's own: the service's job processes,
    tests), starts a fresh local Ray; on a cluster, CPUs are the cluster's business."""
    import ray

    if quiet:
        quiet_ray()
    if ray.is_initialized():
        return "running"
    # Quiet: workers' output stays in Ray's log files (/tmp/ray/session_latest/logs) instead of being copied
    # here line by line, tracebacks of retried tasks included; `synth2 run --debug` keeps Ray's defaults.
    log_to_driver = not quiet
    own = local or (num_cpus is not None and not (address or os.environ.get("RAY_ADDRESS")))
    found = None if own else find_cluster(address)
    if found:
        try:
            ray.init(address=found, log_to_driver=log_to_driver, configure_logging=False)
            log.info("joined the Ray cluster at %s (%s)", found, ray.cluster_resources())
            return "cluster"
        except ConnectionError as e:
            if address or os.environ.get("RAY_ADDRESS"):
                raise RuntimeError(f"cannot reach the Ray cluster at {found}: {e}") from e
            log.warning("the last `ray start` cluster (%s) is gone (%s); starting a local Ray", found, e)
    _loopback_only()
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             num_cpus=num_cpus or os.cpu_count(), log_to_driver=log_to_driver, configure_logging=False)
    return "local"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline/run.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--spec", help="job spec file (YAML or JSON)")
    src.add_argument("--spec-json", help="the job spec itself, as JSON (how the service submits jobs)")
    parser.add_argument("--force", action="store_true", help="replace the output of a different spec in output.dir")
    parser.add_argument("--output-dir", help="override output.dir")
    parser.add_argument("--local", action="store_true", help="run every stage in this process, without Ray")
    parser.add_argument("--debug", action="store_true", help="on failure, the whole traceback (and Ray's worker logs)")
    args = parser.parse_args(argv)
    if not args.debug:  # model loading's progress bars (transformers, hub) stay out, here and on Ray's workers
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("synth2", "pipeline", "generators"):
        logging.getLogger(name).setLevel(logging.INFO)

    from pipeline.job import error_line
    from pipeline.model_refs import resolve_relative
    from pipeline.spec import SpecError, load_spec, parse_spec

    try:
        spec = resolve_relative(load_spec(args.spec), Path(args.spec).parent) if args.spec else \
            parse_spec(json.loads(args.spec_json))
        if args.output_dir:
            spec.output.dir = args.output_dir
    except json.JSONDecodeError as e:
        print(f"--spec-json: not JSON: {e}", file=sys.stderr)
        return 2
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        stats = run_spec(spec, force=args.force, local=args.local, quiet=not args.debug,
                         spec_dir=Path(args.spec).parent if args.spec else None)
    except ModelError as e:  # before anything started: the spec's own lines
        for p in e.problems:
            print(f"error: {p}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 -- one line a user can act on; --debug shows where it came from
        if args.debug:
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        print("(run again with --debug for the traceback; progress.json in output.dir has the error too)",
              file=sys.stderr)
        return 1
    summary = {k: v for k, v in stats.items() if k != "metrics"}  # the metrics are in stats.json and the report
    print(json.dumps(summary, indent=1))
    sel = stats.get("metrics", {}).get("selected", {})
    if sel:
        print("selected captions: " + ", ".join(f"{k} {sel[k]:.4g}" for k in ("vendi", "distinct_2", "concept_entropy",
                                                                             "concept_gini", "prior_alignment_mean")
                                                if isinstance(sel.get(k), (int, float))))
    if spec.kind == "consumer":
        print(f"results: {spec.output.dir.rstrip('/')}/ ({', '.join(stats['files'])})")
    elif spec.kind == "clrs":
        print(f"shards: {spec.output.dir.rstrip('/')}/ (manifest.json; read with consumers.clrs.data.ShardDataset)")
    else:
        print(f"report: {spec.output.dir.rstrip('/')}/report.html")
    return 0


class ModelError(ValueError):
    """A spec whose models cannot be loaded here (pipeline/model_refs.py); `problems` has one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def run_spec(spec, *, force: bool = False, local: bool = False, num_cpus: int | None = None,
             quiet: bool = False, spec_dir: str | Path | None = None) -> dict:
    """Run (or resume) a parsed job spec on Ray (or in this process with `local`); returns its stats.
    Its models are checked first (ModelError: nothing has started). `quiet` keeps Ray's own log lines and
    progress bars out of this process's output (the job's own log lines stay)."""
    from pipeline.model_refs import check_models
    from pipeline.runner import LocalExecutor, RayExecutor, run_job

    if problems := check_models(spec, spec_dir):
        raise ModelError(problems)
    if local or spec.kind in ("clrs", "consumer"):  # CLRS samplers are cheap NumPy, consumers run here: no Ray
        return run_job(spec, force=force, executor=LocalExecutor())
    init_ray(num_cpus=num_cpus, quiet=quiet)
    return run_job(spec, force=force, executor=RayExecutor())


if __name__ == "__main__":
    sys.exit(main())
