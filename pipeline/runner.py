"""Run (or resume) a job of any kind: one dispatch over one skeleton (`pipeline/job.py`).

    run_job(spec, executor=LocalExecutor())   # or RayExecutor(); pipeline/run.py picks one

Every kind opens the same context (spec, hash, job id, store, progress), runs on the executor's
workers, and ends the same way: SUCCEEDED with stats.json, or FAILED / STOPPED with the error in
progress.json. Kinds: synthesize (`pipeline/synthesize.py`), embed (`pipeline/embed.py`), clrs
(`pipeline/clrs.py`), consumer (`contracts/registry.py`, which keeps its own results layout).
"""

from __future__ import annotations

from pipeline import clrs, embed, synthesize
from pipeline.executors import LocalExecutor, RayExecutor, ResourceError, Step
from pipeline.job import JobConflict, JobContext, Progress, job_id_for, key_job_id, prepare_dir, record_end
from pipeline.spec import JobSpec, spec_hash

__all__ = ["JobConflict", "LocalExecutor", "Progress", "RayExecutor", "ResourceError", "Step", "job_id_for",
           "key_job_id", "prepare_dir", "run_job"]

KINDS = {"synthesize": synthesize, "embed": embed, "clrs": clrs}


def run_job(spec: JobSpec, *, force: bool = False, executor=None) -> dict:
    """Run (or resume) a job; returns its stats."""
    if spec.kind == "consumer":  # in this process, without Ray; the registry records how it ended
        from contracts.registry import run_consumer

        return run_consumer(spec.consumer.name, spec.consumer.params, spec.output.dir, spec_hash=spec_hash(spec),
                            force=force)
    kind = KINDS[spec.kind]
    executor = executor or LocalExecutor()
    before = getattr(kind, "before_open", None)
    pre = before(spec, executor) if before else None  # checks that must pass before anything is written
    ctx = JobContext.open(spec, force, executor, kind.job_layout(spec))
    try:
        return kind.run(ctx, pre) if before else kind.run(ctx)
    except BaseException as e:
        record_end(ctx.progress, e)
        raise
