"""Where jobs run: a local subprocess each (the embedded default), or a Ray cluster.

Both runners speak the same small protocol, keyed by the job row the store keeps:

    start(job) -> handle     launch; the handle is saved in the store
    poll(job)  -> Outcome | None   None while it runs; how it ended otherwise
    alive(job) -> bool       after a service restart: is the job still running somewhere?
    stop(job)                ask it to stop (SIGTERM / Ray stop_job), escalate after a grace period
    logs(job, tail) -> str
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_fixed

from serve.policy import Policy
from serve.settings import ROOT, Settings

log = logging.getLogger(__name__)
MARKER = "SYNTH2_SERVE_JOB"


@dataclass
class Outcome:
    status: str  # SUCCEEDED | FAILED | STOPPED
    error: str | None = None


def kill_marked(marker: str) -> None:
    """SIGKILL every process whose environment holds `marker` (`NAME=value`). Ray renames its
    processes and starts some in sessions of their own, so neither command lines nor process
    groups find them all; the environment they inherit does."""
    name, _, value = marker.partition("=")
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        try:
            if p.environ().get(name) == value:
                p.kill()
        except psutil.Error:
            continue


def retrying(message: str, attempts: int = 15, seconds: float = 2.0):
    """Retry a call while it raises a RuntimeError containing MESSAGE (the one retry rule of serve/)."""
    return retry(retry=retry_if_exception(lambda e: isinstance(e, RuntimeError) and message in str(e)),
                 stop=stop_after_attempt(attempts), wait=wait_fixed(seconds), reraise=True)


def tail_text(path: Path, tail: int | None) -> str:
    if not path.exists():
        return ""
    data = path.read_bytes()
    if tail is not None:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-tail:]) if tail > 0 else b""
    return data.decode("utf-8", errors="replace")


class LocalRunner:
    """Each job is `python -m serve.worker RUN_DIR` in a session of its own, with its own local Ray.

    The process outlives the service (a restarted service re-attaches to it by pid and start time),
    and tells how it ended in RUN_DIR/result.json.
    """

    kind = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs = settings.data_dir / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen] = {}

    def run_dir(self, job: dict) -> Path:
        return self.runs / job["id"]

    def start(self, job: dict) -> str:
        d = self.run_dir(job)
        d.mkdir(parents=True, exist_ok=True)
        (d / "result.json").unlink(missing_ok=True)
        (d / "spec.json").write_text(json.dumps(job["spec"], indent=1))
        env = Policy(self.settings).job_env(job["spec"])  # scrubbed: no keys, database URL or Ray token
        env.update({MARKER: job["id"], "PYTHONUNBUFFERED": "1", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
        if self.settings.local_threads:
            env["SYNTH2_JOB_CPUS"] = str(self.settings.local_threads)
        env["SYNTH2_JOB_EXECUTOR"] = self.settings.job_executor
        with open(d / "log.txt", "ab") as logf:
            logf.write(f"--- attempt {job['attempts']} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            logf.flush()
            p = subprocess.Popen([sys.executable, "-m", "serve.worker", str(d)], cwd=ROOT, env=env, stdout=logf,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self._children[job["id"]] = p
        return f"{p.pid}:{psutil.Process(p.pid).create_time():.3f}"

    def _process(self, job: dict) -> psutil.Process | None:
        """The job's worker process if it is still running (guarding against a reused pid)."""
        if not job.get("handle"):
            return None
        pid, created = job["handle"].split(":")
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - float(created)) > 0.01 or p.status() == psutil.STATUS_ZOMBIE:
                return None
            return p
        except psutil.Error:
            return None

    def alive(self, job: dict) -> bool:
        return self._process(job) is not None

    def poll(self, job: dict) -> Outcome | None:
        child = self._children.get(job["id"])
        if child is not None:
            if child.poll() is None:
                return None
            code = child.returncode
            self._children.pop(job["id"], None)
        else:
            if self.alive(job):
                return None
            code = None
        self._reap(job)
        result = self.run_dir(job) / "result.json"
        if result.exists():
            r = json.loads(result.read_text())
            return Outcome(r["status"], r.get("error"))
        how = f"exit code {code}" if code is not None else "no exit code (it was not this service's child)"
        if code is not None and code < 0:
            how = f"signal {signal.Signals(-code).name}"
        return Outcome("FAILED", f"the job's process ended without a result ({how}); "
                                 "resubmit the same spec to resume from its last finished shard")

    def stop(self, job: dict) -> None:
        p = self._process(job)
        if p is None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        threading.Thread(target=self._escalate, args=(dict(job),), daemon=True).start()

    def _escalate(self, job: dict) -> None:
        deadline = time.time() + self.settings.stop_grace_seconds
        while time.time() < deadline and self.alive(job):
            time.sleep(0.2)
        if self.alive(job):
            log.warning("job %s ignored SIGTERM for %.0f s; killing it", job["id"], self.settings.stop_grace_seconds)
            self._reap(job, force=True)

    def _reap(self, job: dict, force: bool = False) -> None:
        """Kill what is left of the job: its process group, and any process (its Ray) that carries its marker."""
        p = self._process(job)
        if force and p is not None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_marked(f"{MARKER}={job['id']}")

    def logs(self, job: dict, tail: int | None = None) -> str:
        return tail_text(self.run_dir(job) / "log.txt", tail)


class RayRunner:
    """Jobs go to a Ray cluster through its Job Submission API (the cluster's auth token comes from
    RAY_AUTH_TOKEN / ~/.ray/auth_token, as for `ray job submit`)."""

    kind = "ray"
    EXCLUDES = [".git", ".venv", "world", "runs", "synth2-data", "bench/results", "*.tar", "__pycache__"]

    def __init__(self, settings: Settings) -> None:
        from ray.job_submission import JobSubmissionClient

        self.settings = settings
        self.client = JobSubmissionClient(settings.ray_address)

    def start(self, job: dict) -> str:
        spec = json.dumps(job["spec"], separators=(",", ":"))
        entrypoint = f"{shlex.quote(self.settings.ray_python)} pipeline/run.py --spec-json {shlex.quote(spec)}"
        submission_id = f"synth2-{job['id']}-{job['attempts']}"
        # Only the secret the spec names (allowed at submission) travels with the job.
        name = (job["spec"].get("captions") or {}).get("api_key_env")
        secrets = {name: os.environ[name]} if name in self.settings.secret_names and name in os.environ else {}
        runtime_env = {"working_dir": str(ROOT), "excludes": self.EXCLUDES} | ({"env_vars": secrets} if secrets else {})
        submit = retrying("No available agent")(self.client.submit_job)  # a new head has no job agent for seconds
        submit(entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env,
               metadata={"synth2_job": job["id"]})
        return submission_id

    def poll(self, job: dict) -> Outcome | None:
        from ray.job_submission import JobStatus

        info = self.client.get_job_info(job["handle"])
        if info.status in (JobStatus.PENDING, JobStatus.RUNNING):
            return None
        if info.status == JobStatus.SUCCEEDED:
            return Outcome("SUCCEEDED")
        if info.status == JobStatus.STOPPED:
            return Outcome("STOPPED")
        return Outcome("FAILED", _last_error(self.logs(job, 50)) or info.message or "the Ray job failed")

    def alive(self, job: dict) -> bool:
        return job.get("handle") is not None and self.poll(job) is None

    def stop(self, job: dict) -> None:
        if job.get("handle"):
            self.client.stop_job(job["handle"])

    def logs(self, job: dict, tail: int | None = None) -> str:
        if not job.get("handle"):
            return ""
        text = self.client.get_job_logs(job["handle"])
        if tail is None:
            return text
        return "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""


def _last_error(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        if line.startswith("error: ") or "Error: " in line:
            return line.strip()
    return None


def make_runner(settings: Settings):
    return RayRunner(settings) if settings.ray_address else LocalRunner(settings)
