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


def init_ray(address: str | None = None, num_cpus: int | None = None, local: bool = False) -> str:
    """Join the cluster this job was submitted to, or a running `ray start` (RAY_ADDRESS or the
    machine's current cluster), or else start a local Ray with every server on loopback. Returns
    "cluster", "local", or "running" (this process had joined one already). `local`, or a
    `num_cpus` without an address (the size of a Ray of one's own: the service's job processes,
    tests), starts a fresh local Ray; on a cluster, CPUs are the cluster's business."""
    import ray

    if ray.is_initialized():
        return "running"
    own = local or (num_cpus is not None and not (address or os.environ.get("RAY_ADDRESS")))
    found = None if own else find_cluster(address)
    if found:
        try:
            ray.init(address=found, log_to_driver=True, configure_logging=False)
            log.info("joined the Ray cluster at %s (%s)", found, ray.cluster_resources())
            return "cluster"
        except ConnectionError as e:
            if address or os.environ.get("RAY_ADDRESS"):
                raise RuntimeError(f"cannot reach the Ray cluster at {found}: {e}") from e
            log.warning("the last `ray start` cluster (%s) is gone (%s); starting a local Ray", found, e)
    # A single-machine Ray: keep every Ray server on loopback. Without this Ray swaps
    # 127.0.0.1 for the machine's routable address and its servers listen on every interface.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
             num_cpus=num_cpus or os.cpu_count(), log_to_driver=True, configure_logging=False)
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    for name in ("synth2", "pipeline", "generators"):
        logging.getLogger(name).setLevel(logging.INFO)

    from pipeline.runner import JobConflict
    from pipeline.spec import SpecError, load_spec, parse_spec

    try:
        spec = load_spec(args.spec) if args.spec else parse_spec(json.loads(args.spec_json))
        if args.output_dir:
            spec.output.dir = args.output_dir
    except json.JSONDecodeError as e:
        print(f"--spec-json: not JSON: {e}", file=sys.stderr)
        return 2
    except SpecError as e:
        print(str(e), file=sys.stderr)
        return 2
    try:
        stats = run_spec(spec, force=args.force, local=args.local)
    except (JobConflict, ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
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


def run_spec(spec, *, force: bool = False, local: bool = False, num_cpus: int | None = None) -> dict:
    """Run (or resume) a parsed job spec on Ray (or in this process with `local`); returns its stats."""
    from pipeline.runner import LocalExecutor, RayExecutor, run_job

    if local or spec.kind in ("clrs", "consumer"):  # CLRS samplers are cheap NumPy, consumers run here: no Ray
        return run_job(spec, force=force, executor=LocalExecutor())
    init_ray(num_cpus=num_cpus)
    return run_job(spec, force=force, executor=RayExecutor())


if __name__ == "__main__":
    sys.exit(main())
