"""What the routes answer about a job or a consumer run: views built from its row and its output files."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from contracts.storage import Store

STAGE_ORDER = ("caption", "score", "select", "synthesize", "embed", "shard")


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds") if t else None


def read_json(job: dict, name: str) -> Any:
    store = Store(job["output_dir"])
    try:
        return store.read_json(name) if store.exists(name) else None
    except (OSError, ValueError):  # being replaced right now
        return None


def manifest(job: dict) -> dict | None:
    return read_json(job, "manifest.json")


def consumer_of(job: dict) -> str | None:
    spec = job.get("spec") or {}
    return (spec.get("consumer") or {}).get("name") if spec.get("kind") == "consumer" else None


def job_view(job: dict, detail: bool = False) -> dict:
    jid = job["id"]
    progress = read_json(job, "progress.json") if job["started_at"] else None
    if progress and (progress.get("updated_at") or 0) < job["started_at"]:
        progress = None  # left by an earlier run of the same spec; this run has not written its own yet
    view = {
        "id": jid, "name": job["name"], "status": job["status"], "key_id": job["key_id"],
        "spec_hash": job["spec_hash"], "runner": job["runner"], "attempts": job["attempts"],
        "created_at": _iso(job["created_at"]), "started_at": _iso(job["started_at"]),
        "finished_at": _iso(job["finished_at"]), "error": job["error"], "message": job["message"],
        "progress": _stages((progress or {}).get("stages", {}), job["status"]),
        "links": {"self": f"/v1/jobs/{jid}", "logs": f"/v1/jobs/{jid}/logs", "manifest": f"/v1/jobs/{jid}/manifest",
                  "report": f"/v1/jobs/{jid}/report", "cancel": f"/v1/jobs/{jid}/cancel"},
    }
    if job["started_at"] and job["status"] in ("RUNNING", "SUCCEEDED", "FAILED", "STOPPED"):
        end = job["finished_at"] or time.time()
        view["elapsed_s"] = round(end - job["started_at"], 1)
    if detail:
        view["counts"] = read_json(job, "stats.json")
        view["spec"] = job["spec"]
    return view


def run_view(job: dict, detail: bool = False) -> dict:
    """A job view for a consumer run: its consumer, params, and (detail) summary and files."""
    name, jid = consumer_of(job), job["id"]
    view = job_view(job, detail=detail)
    base = f"/v1/consumers/{name}/runs/{jid}"
    view["consumer"] = name
    view["params"] = job["spec"]["consumer"]["params"]
    view["links"] = {"self": base, "logs": f"{base}/logs", "cancel": f"{base}/cancel", "files": f"{base}/files",
                     "job": f"/v1/jobs/{jid}"}
    if detail:
        view.pop("counts", None)
        result = read_json(job, "summary.json") if job["status"] == "SUCCEEDED" else None
        view["summary"] = (result or {}).get("summary")
        view["seconds"] = (result or {}).get("seconds")
        view["files"] = {f: f"{base}/files/{quote(f)}" for f in (result or {}).get("files", [])}
    return view


def _stages(stages: dict, job_status: str) -> dict:
    """Per-stage progress in pipeline order (progress.json keeps them sorted by name); the stages a
    failed or stopped job left unfinished take the job's status."""
    order = sorted(stages, key=lambda k: STAGE_ORDER.index(k) if k in STAGE_ORDER else len(STAGE_ORDER))
    out = {k: {f: stages[k][f] for f in ("done", "total", "status", "rate_per_s", "shards", "step") if f in stages[k]}
           for k in order}
    if job_status in ("FAILED", "STOPPED"):
        for v in out.values():
            if v.get("status") in ("RUNNING", "PENDING"):
                v["status"] = job_status
    return out
