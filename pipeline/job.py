"""The one skeleton every job kind runs in: a context (spec, hash, job id, store, progress,
executor), the job directory's claim (`job.json`), and how a job ends (SUCCEEDED, FAILED or
STOPPED recorded in `progress.json`, stats in `stats.json`).

Kinds (`pipeline/synthesize.py`, `embed.py`, `clrs.py`) import this module; `pipeline/runner.py`
dispatches to them, so imports run downward: runner -> kinds -> job, executors, tasks.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from contracts.shards import MANIFEST, Manifest, ShardInfo, embedding_info, shard_name, utc_now
from contracts.storage import Store
from pipeline.spec import JobSpec, spec_hash

log = logging.getLogger(__name__)
LOG_EVERY_S = 15.0  # a running stage's progress line, at most this often (and on every status change)


class JobConflict(RuntimeError):
    """The output directory holds something other than this job's output."""


@dataclass
class Progress:
    store: Store
    job_id: str
    stages: dict[str, dict] = field(default_factory=dict)
    status: str = "RUNNING"
    error: str | None = None
    _last: float = 0.0
    _logged: dict[str, float] = field(default_factory=dict)

    def update(self, stage: str, done: int | None = None, total: int | None = None, status: str | None = None,
               force: bool = False, **extra) -> None:
        s = self.stages.setdefault(stage, {"done": 0, "total": None, "status": "PENDING", "started_at": None})
        now = time.time()
        if s["started_at"] is None and (status == "RUNNING" or done):
            s["started_at"] = now
            s["resumed_at"] = int(done or 0)  # a rate counts only what this run did
        if done is not None:
            s["done"] = int(done)
        if total is not None:
            s["total"] = int(total)
        changed = bool(status) and status != s["status"]
        if status:
            s["status"] = status
            if status in ("SUCCEEDED", "FAILED", "STOPPED") and s["started_at"] is not None:
                s["seconds"] = round(now - s["started_at"], 2)  # this run's time in the stage
        s.update(extra)
        ran = s["done"] - s.get("resumed_at", 0)
        if s["started_at"] and ran > 0 and now - s["started_at"] >= 0.5:  # no rate from a resumed instant
            s["rate_per_s"] = round(ran / max(now - s["started_at"], 1e-6), 2)
        if changed or (s["status"] == "RUNNING" and now - self._logged.get(stage, 0.0) >= LOG_EVERY_S):
            self._logged[stage] = now
            log.info("%s", self.line(stage))
        if force or status or now - self._last > 1.0:
            self.save()

    def line(self, stage: str) -> str:
        """`caption   RUNNING  1024/4800 (21%), 51.2/s` (resumed work counted in the count, not the rate)."""
        s = self.stages[stage]
        count = f"{s['done']}/{s['total']}" if s.get("total") else str(s["done"])
        pct = f" ({100 * s['done'] / s['total']:.0f}%)" if s.get("total") else ""
        rate = f", {s['rate_per_s']:g}/s" if s.get("rate_per_s") else ""
        resumed = f", {s['resumed_at']} from an earlier run" if s.get("resumed_at") else ""
        return f"{stage:<10} {s['status']:<9} {count}{pct}{rate}{resumed}"

    def save(self) -> None:
        self._last = time.time()
        data = {"job_id": self.job_id, "status": self.status, "error": self.error, "updated_at": self._last,
                "stages": self.stages}
        self.store.write_json(data, "progress.json")


def job_id_for(spec: JobSpec) -> str:
    return f"{spec.name}-{spec_hash(spec)[:12]}"


def key_job_id(spec: JobSpec) -> str:
    """The id sample keys derive from: the job id of the same spec in embedding space, so that a
    spec's embedding and pixel runs write the same keys for the same captions."""
    if spec.synthesis is None or spec.synthesis.space == "embedding":
        return job_id_for(spec)
    return job_id_for(spec.model_copy(update={"synthesis": spec.synthesis.model_copy(update={"space": "embedding"})}))


def sample_key_id(spec: JobSpec) -> str:
    """The id a new job's sample keys derive from: `key_job_id` of the spec with each local or `pkg:` model
    replaced by the sha256 of its files, so keys stay the same when only a model's path changes (a job
    directory keeps the id it started with in job.json's layout)."""
    from pipeline.model_refs import key_spec

    return key_job_id(key_spec(spec))


def prepare_dir(spec: JobSpec, force: bool, layout: dict | None = None) -> tuple[Store, dict]:
    """Create or reopen the job directory; refuse one that holds another job (unless `force`).
    Returns the store and the job's layout (chunk sizes...), which a resumed run keeps from the first."""
    out = Store(spec.output.dir)
    where = spec.output.dir
    if out.is_file():
        raise JobConflict(f"output.dir {where!r} exists and is a file, not a directory")
    h = spec_hash(spec)
    layout = dict(layout or {})
    if out.exists("job.json"):
        old = out.read_json("job.json")
        if old.get("spec_hash") != h:
            if not force:
                raise JobConflict(
                    f"output.dir {where!r} holds job {old.get('job_id')!r} made from a different spec "
                    f"(spec hash {old.get('spec_hash', '?')[:12]} vs {h[:12]}); use another output.dir, "
                    f"or --force to delete its output and start again")
            log.warning("--force: deleting the output of job %s in %s", old.get("job_id"), where)
            for name in ["stages", MANIFEST, "stats.json", "progress.json", *out.glob("*.tar")]:
                out.remove(name)
        else:
            layout = old.get("layout", layout) if out.exists("stages") else layout
    elif out.glob("*.tar"):
        raise JobConflict(f"output.dir {where!r} already holds shards that no synth2 job wrote; pick another")
    if spec.kind == "synthesize" and "key_id" not in layout and not out.exists(MANIFEST):
        layout["key_id"] = sample_key_id(spec)  # a job begun before key ids were content-based keeps its keys
    out.makedirs("stages")
    out.write_json({"job_id": job_id_for(spec), "spec_hash": h, "spec": spec.model_dump(mode="json"),
                    "layout": layout}, "job.json")
    return out, layout


@dataclass
class JobContext:
    """What every stage of a job needs: the spec, its hash and id, the store, progress, the executor."""

    spec: JobSpec
    spec_hash: str
    job_id: str
    store: Store
    progress: Progress
    executor: object
    layout: dict
    started: float = field(default_factory=time.time)

    @classmethod
    def open(cls, spec: JobSpec, force: bool, executor, layout: dict | None = None) -> JobContext:
        store, layout = prepare_dir(spec, force, layout)
        progress = Progress(store, job_id_for(spec))
        for stage in STAGES.get(spec.kind, ()):  # every stage is listed from the start, so a failure can mark it
            progress.stages[stage] = {"done": 0, "total": None, "status": "PENDING", "started_at": None}
        return cls(spec, spec_hash(spec), job_id_for(spec), store, progress, executor, layout)

    def finish(self, stats: dict, report: bool = True) -> dict:
        """Write stats.json (and the report, for kinds with captions), then mark the job SUCCEEDED."""
        stats = {"job_id": self.job_id, "spec_hash": self.spec_hash, **stats,
                 "seconds": round(time.time() - self.started, 2)}
        self.store.write_json(stats, "stats.json")
        if report:
            stats = write_metrics_and_report(self, stats)
        self.progress.status = "SUCCEEDED"
        self.progress.save()
        return stats


STAGES = {"synthesize": ("caption", "score", "select", "synthesize", "shard"), "embed": ("embed",),
          "clrs": ("sample",)}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


_EXC_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)): ?(.*)$")


def error_line(e: BaseException, limit: int = 2000) -> str:
    """`Type: message` of the error that ended a job, one line, no ANSI colour codes. Ray's wrappers are
    unwrapped to the cause (a task error's text is the whole coloured remote traceback; an actor that died in
    its constructor carries only that text, whose last exception is the one that matters)."""
    seen: set[int] = set()
    while id(e) not in seen and type(e).__module__.split(".")[0] == "ray":
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        cause = cause if isinstance(cause, BaseException) else e.__cause__
        if not isinstance(cause, BaseException) or not str(cause).strip():  # Ray Data's SystemException() marker
            break
        e = cause
    name, text = type(e).__name__, _ANSI.sub("", str(e)).strip()
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and any(ln.lstrip().startswith(("File \"", "Traceback (")) or "direct cause" in ln for ln in lines):
        last = max((i for i, ln in enumerate(lines) if _EXC_LINE.match(ln)), default=None)
        if last is not None:  # the last exception of the traceback text, with its message's further lines
            m = _EXC_LINE.match(lines[last])
            rest = [ln for ln in lines[last + 1:] if not ln.lstrip().startswith(("File \"", "^"))]
            name, lines = m.group(1), [m.group(2), *rest]
    text = " ".join(ln.strip() for ln in lines if ln.strip())
    line = f"{name}: {text}" if text else name
    return line if len(line) <= limit else line[:limit - 3] + "..."


def record_end(progress: Progress, e: BaseException) -> None:
    """A job that did not finish says how it ended: STOPPED (interrupted) or FAILED, with the error (one line,
    no colour codes), and every stage that had not finished is marked so, the ones never started included."""
    progress.status = "STOPPED" if isinstance(e, (KeyboardInterrupt, SystemExit)) else "FAILED"
    progress.error = error_line(e) if not isinstance(e, KeyboardInterrupt) else str(e) or "stopped"
    for s in progress.stages.values():
        if s.get("status") != "SUCCEEDED":
            s["status"] = progress.status
    progress.save()


def write_metrics_and_report(ctx: JobContext, stats: dict) -> dict:
    """Caption diversity and balance metrics into stats.json, and report.json + report.html; on a
    worker when the executor has them (the report reads every caption of the job)."""
    from pipeline.report import write_report

    t = time.time()
    report = ctx.executor.call(_report_metrics, ctx.store.url, write_report)
    stats = stats | {"metrics": report, "report_seconds": round(time.time() - t, 2)}
    ctx.store.write_json(stats, "stats.json")
    return stats


def _report_metrics(url: str, write_report) -> dict:
    return write_report(url)["metrics"]


EMBEDDING_NORM = {"synthesize": "l2", "embed": "l2"}  # the prior's and open_clip's outputs are L2-normalised


def describe(ctx: JobContext, manifest: Manifest) -> None:
    """What a manifest says of itself: when it was created, by which synth2, from which models (sha256 of their
    files, or hub revisions). A manifest written before these fields existed gets them on its next run."""
    from pipeline.model_refs import describe_models
    from pipeline.version import __version__

    manifest.created_at = manifest.created_at or utc_now()
    manifest.synth2_version = __version__
    if manifest.models is None:
        manifest.models = describe_models(ctx.spec)


def write_shards(ctx: JobContext, total: int, step, stages: tuple[str, ...], extra: dict | None = None,
                 on_result: Callable[[dict], None] | None = None) -> Manifest:
    """Have workers write shards 0..ceil(total/S)-1 (shard k holds samples [k*S, (k+1)*S)) through
    `step`, a stage class over `{"shard": k}` returning `{"info": ShardInfo JSON, ...}`; commit each
    to the manifest as it arrives. Shards the manifest already lists are skipped (resume); a shard
    file it does not list (a crash between rename and commit) is rewritten, with the same bytes."""
    spec, store = ctx.spec, ctx.store
    size = spec.output.shard_size
    n_shards = (total + size - 1) // size
    manifest = Manifest.load(store.url) or Manifest(name=spec.output.name, spec=spec.model_dump(mode="json"),
                                                    spec_hash=ctx.spec_hash)
    if manifest.name != spec.output.name:
        raise JobConflict(f"{spec.output.dir} holds shards named {manifest.name!r}, not {spec.output.name!r}")
    manifest.extra.update(extra or {})
    describe(ctx, manifest)
    listed = {s.name for s in manifest.shards}
    for stale in store.glob(f"{spec.output.name}-*.tar.tmp") + [
            n for n in store.glob(f"{spec.output.name}-*.tar") if n not in listed]:
        store.remove(stale)
    pending = [{"shard": k} for k in range(n_shards) if shard_name(spec.output.name, k) not in listed]
    for stage in stages:
        ctx.progress.update(stage, done=manifest.samples, total=total, status="RUNNING", shards=len(manifest.shards),
                            force=True)
    last, unsaved = 0.0, False
    try:
        for row in ctx.executor.run(pending, [step]):
            manifest.shards.append(ShardInfo(**json.loads(row["info"])))
            manifest.shards.sort(key=lambda s: s.first_index)
            unsaved = True
            if on_result:
                on_result(row)
            if time.time() - last > 0.5:  # commits are cheap but not free: at most two a second, and one at the end
                manifest.save(store.url)
                last, unsaved = time.time(), False
            for stage in stages:
                ctx.progress.update(stage, done=manifest.samples, shards=len(manifest.shards))
    finally:
        if unsaved:  # a stopped or failed job keeps every shard a worker finished
            manifest.save(store.url)
    manifest.complete = True
    if manifest.embedding is None and manifest.shards:
        manifest.embedding = embedding_info(store.uri(manifest.shards[0].name), EMBEDDING_NORM.get(spec.kind))
    manifest.save(store.url)
    for stage in stages:
        ctx.progress.update(stage, done=manifest.samples, status="SUCCEEDED", shards=len(manifest.shards), force=True)
    return manifest
