"""The job manager: validates and queues submissions, runs at most N at once in order, follows
them to the end, cancels them, and reconciles what it finds on start-up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from contracts.storage import Store
from pipeline.spec import SpecError, parse_spec, spec_hash
from serve.errors import Refused
from serve.policy import Policy
from serve.runner import make_runner
from serve.settings import Settings
from serve.store import ACTIVE, JobStore

log = logging.getLogger(__name__)
__all__ = ["JobManager", "Refused", "consumer_spec"]


def consumer_spec(name: str, data: Any) -> dict:
    """A consumer run's spec from a request body: the consumer's params, or a whole `kind: consumer` spec."""
    if isinstance(data, dict) and "version" in data and "consumer" in data:  # a whole spec
        if data.get("kind", "consumer") != "consumer":
            raise Refused(422, [f"kind: must be 'consumer' on this route (got {data.get('kind')!r})"])
        section = data.get("consumer")
        if isinstance(section, dict) and section.get("name") != name:
            raise Refused(422, [f"consumer.name: must be {name!r}, the consumer in the URL (got {section.get('name')!r})"])
        return {**data, "kind": "consumer"}
    if isinstance(data, dict):
        return {"version": 1, "name": name, "kind": "consumer", "consumer": {"name": name, "params": data}}
    raise Refused(422, [f"(body): the params of consumer {name!r} as an object (got {type(data).__name__})"])


def own_job_sources(spec: dict, base_url: str, find: Callable[[str], dict | None]) -> dict:
    """A consumer run's params that name a job of this same service by URL (`{base_url}v1/jobs/ID`, optionally
    `/manifest` and `@WEIGHT`) read that job's output directory instead: the run's process holds no API key (and
    needs none for the service's own outputs). `find(ID)` gives the job if the submitting key may see it; a URL
    of a job it may not see, or of another service, is left as it is (the policy decides)."""
    prefix = base_url.rstrip("/") + "/v1/jobs/"

    def local(value: Any) -> Any:
        if isinstance(value, list):
            return [local(v) for v in value]
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if not isinstance(value, str) or not value.startswith(prefix):
            return value
        url, sep, weight = value.rpartition("@") if "@" in value[len(prefix):] else (value, "", "")
        job_id = url[len(prefix):].removesuffix("/").removesuffix("/manifest")
        job = find(job_id) if job_id and "/" not in job_id else None
        return f"{job['output_dir']}{sep}{weight}" if job and job.get("output_dir") else value

    consumer = spec.get("consumer")
    if not isinstance(consumer, dict) or not isinstance(consumer.get("params"), dict):
        return spec
    return {**spec, "consumer": {**consumer, "params": local(consumer["params"])}}



STOP_REQUESTED = "stopping on request"  # a RUNNING job's message once it has been cancelled

class JobManager:
    def __init__(self, settings: Settings, store: JobStore, runner=None) -> None:
        self.settings, self.store = settings, store
        self.policy = Policy(settings)
        self.runner = runner or make_runner(settings)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick at a time

    # ------------------------------------------------------------ requests

    def submit(self, data: Any, key_id: str) -> dict:
        if isinstance(data, dict) and isinstance(data.get("output", {}), dict):
            # The service decides where outputs go (below); a spec may leave output.dir out.
            data = {**data, "output": {"dir": "(set by the service)", **data.get("output", {})}}
        try:
            spec = parse_spec(data, source="body")
        except SpecError as e:
            raise Refused(422, e.problems) from None
        if problems := self.policy.problems(spec):  # what this deployment lets a key holder's spec reach
            raise Refused(422, problems)
        h = spec_hash(spec)
        if self.store.count(statuses=ACTIVE, key_id=key_id) >= self.settings.max_jobs_per_key:
            raise Refused(429, f"this API key already has {self.settings.max_jobs_per_key} jobs pending or running "
                               f"(SYNTH2_MAX_JOBS_PER_KEY); wait for one to finish or cancel one")
        if (dup := self.store.active_with_hash(h)) is not None:
            raise Refused(409, f"job {dup['id']} with the same spec (hash {h[:12]}) is {dup['status']}; "
                               "follow that one instead")
        # The service owns where outputs go. The directory is named by the spec hash, so the same
        # spec submitted again (after a cancel or a failure) resumes from its finished shards.
        spec.output.dir = Store(self.settings.outputs).uri(f"{spec.name}-{h[:16]}")
        job = self.store.create(name=spec.name, key_id=key_id, spec=spec.model_dump(mode="json"), spec_hash=h,
                                output_dir=spec.output.dir, runner=self.runner.kind)
        self._wake.set()
        return job

    def cancel(self, job_id: str) -> dict:
        job = self.store.get(job_id)
        if job is None:
            raise Refused(404, f"no job {job_id!r}")
        if job["status"] == "PENDING" and self.store.transition(job_id, "PENDING", status="STOPPED",
                                                                message="cancelled before it started"):
            return self.store.get(job_id)
        job = self.store.get(job_id)
        if job["status"] == "RUNNING":
            self.store.transition(job_id, "RUNNING", message=STOP_REQUESTED)
            job = self.store.get(job_id)
            if job.get("handle"):  # else the job is still starting: _start stops it once its process exists
                self.runner.stop(job)
            self._wake.set()
        return self.store.get(job_id)

    def logs(self, job: dict, tail: int | None) -> str:
        return self.runner.logs(job, tail) if job.get("handle") else ""

    # ------------------------------------------------------------ the loop

    def tick(self) -> None:
        with self._lock:
            for job in self.store.list(status="RUNNING", limit=10_000, oldest_first=True):
                if job["runner"] != self.runner.kind:
                    continue
                try:
                    outcome = self.runner.poll(job)
                except Exception as e:  # noqa: BLE001 -- a cluster that cannot be reached is retried next tick
                    log.warning("cannot poll job %s: %s", job["id"], e)
                    continue
                if outcome is None:
                    continue
                status = outcome.status
                if job.get("message") == STOP_REQUESTED and status != "SUCCEEDED":
                    status = "STOPPED"
                message = {"SUCCEEDED": None, "STOPPED": "stopped on request; resubmit the same spec to resume"}.get(
                    status, job.get("message"))
                self.store.transition(job["id"], "RUNNING", status=status, error=outcome.error, message=message)
                log.info("job %s %s%s", job["id"], status, f": {outcome.error}" if outcome.error else "")
            free = self.settings.max_running - self.store.count(statuses=("RUNNING",))
            if free > 0:
                for job in self.store.list(status="PENDING", limit=free, oldest_first=True):
                    self._start(job)

    def _start(self, job: dict) -> None:
        if not self.store.transition(job["id"], "PENDING", status="RUNNING", started_at=time.time(),
                                     attempts=job["attempts"] + 1, error=None, message=None):
            return  # cancelled (or taken by another replica) meanwhile
        job = self.store.get(job["id"])
        try:
            handle = self.runner.start(job)
        except Exception as e:  # noqa: BLE001
            log.exception("cannot start job %s", job["id"])
            self.store.transition(job["id"], "RUNNING", status="FAILED", error=f"could not start the job: {e}")
            return
        self.store.transition(job["id"], "RUNNING", handle=handle)
        log.info("job %s started (%s %s)", job["id"], self.runner.kind, handle)
        now = self.store.get(job["id"])
        if now is not None and now["status"] == "RUNNING" and now.get("message") == STOP_REQUESTED:
            self.runner.stop(now)  # a cancel that came while the process was starting (no handle yet to signal)

    def reconcile(self) -> None:
        """On start-up: re-attach to jobs still running, and settle those that died with the service."""
        for job in self.store.list(status="RUNNING", limit=10_000, oldest_first=True):
            if job["runner"] != self.runner.kind:
                continue
            try:
                alive = self.runner.alive(job)
            except Exception as e:  # noqa: BLE001
                log.warning("cannot reach job %s to reconcile it: %s; will retry", job["id"], e)
                continue
            if alive:
                self.store.transition(job["id"], "RUNNING", message="re-attached after a service restart")
                log.info("re-attached to job %s", job["id"])
                continue
            outcome = self.runner.poll(job)
            if outcome is not None and outcome.status == "SUCCEEDED":
                self.store.transition(job["id"], "RUNNING", status="SUCCEEDED", message=None)
            elif self.settings.resubmit_orphans:
                self.store.transition(job["id"], "RUNNING", status="PENDING", handle=None,
                                      message="requeued after a service restart; resumes from its last finished shard")
                log.info("requeued job %s", job["id"])
            else:
                reason = ("the service restarted while this job ran, and its process is gone"
                          + (f" ({outcome.error})" if outcome and outcome.error else "")
                          + "; resubmit the same spec to resume from its last finished shard")
                self.store.transition(job["id"], "RUNNING", status="FAILED", error=reason)
                log.info("job %s marked FAILED: %s", job["id"], reason)

    def start(self) -> None:
        self.reconcile()
        self._thread = threading.Thread(target=self._loop, name="synth2-jobs", daemon=True)
        self._thread.start()

    def shutdown(self) -> None:
        """Stop following jobs; they go on running, and the next start re-attaches to them."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 -- e.g. the database is briefly unreachable
                log.exception("job loop")
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()
