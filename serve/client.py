"""A small synchronous client for the synth2 service (`synth2 jobs ...`, `synth2 pull`).

    from serve.client import Synth2Client
    c = Synth2Client()                       # SYNTH2_URL (default http://127.0.0.1:8000), SYNTH2_API_KEY
    job = c.submit("configs/demo.yaml")      # or a dict
    c.wait(job["id"])
    c.pull(job["id"], "out/")                # shards + manifest.json: contracts.shards.iter_samples("out/")

`pull` downloads shards in parallel, each to `NAME.part` first; an interrupted pull resumes from
the `.part` files (`Range` + `If-Range` on the shard's sha256 ETag), every shard's sha256 is
checked against the manifest, and only a verified shard is renamed to its final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
CHUNK = 1 << 20


class ClientError(Exception):
    """Anything the client cannot do (the CLI prints it as `error: ...`)."""


class ServiceError(ClientError):
    """The service answered with an error status."""

    def __init__(self, status: int, detail: Any, method: str = "", path: str = "") -> None:
        self.status, self.detail, self.method, self.path = status, detail, method, path
        super().__init__(str(self))

    def __str__(self) -> str:
        detail = "; ".join(map(str, self.detail)) if isinstance(self.detail, list) else str(self.detail)
        where = f" from {self.method} {self.path}" if self.method else ""
        hint = " (check SYNTH2_API_KEY or --key)" if self.status == 401 else ""
        return f"{self.status}{where}: {detail}{hint}"


class WaitTimeout(ClientError, TimeoutError):
    """`wait` ran past its timeout (the job goes on)."""


class ShardError(ClientError):
    """A shard that could not be downloaded whole (wrong size or sha256)."""


@dataclass
class PullSummary:
    dir: str
    shards: int = 0  # in the manifest (all of them are in `dir` after the pull)
    samples: int = 0
    complete: bool = False  # the manifest says the job wrote its last shard
    downloaded: int = 0  # shards fetched from the start
    resumed: int = 0  # shards finished from a `.part` left by an earlier pull
    redownloaded: int = 0  # of those, shards whose `.part` was corrupt and was fetched again from zero
    skipped: int = 0  # shards already present with the right sha256
    bytes: int = 0  # bytes received over the network

    def as_dict(self) -> dict:
        return asdict(self)


class Synth2Client:
    def __init__(self, url: str | None = None, key: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.url = (url or os.environ.get("SYNTH2_URL") or DEFAULT_URL).rstrip("/")
        key = key or os.environ.get("SYNTH2_API_KEY")
        if not key:
            raise ClientError("no API key: set SYNTH2_API_KEY (or pass --key)")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout,
                                 transport=transport, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Synth2Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ requests

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException as e:
            raise ClientError(f"{method} {path}: the synth2 service at {self.url} did not answer in time ({e})") from None
        except httpx.TransportError as e:
            raise ClientError(f"cannot reach the synth2 service at {self.url}: {e}") from None
        if r.status_code >= 400:
            raise _service_error(r, method, path)
        return r

    def _json(self, method: str, path: str, **kwargs) -> Any:
        r = self._request(method, path, **kwargs)
        try:
            return r.json()
        except ValueError:
            raise ClientError(f"{method} {path}: the service answered {r.status_code} with a body that is not JSON") from None

    def submit(self, spec: dict | str | os.PathLike) -> dict:
        """Queue a job. `spec` is a spec dict, or the path of a YAML or JSON spec file."""
        if isinstance(spec, dict):
            return self._json("POST", "/v1/jobs", json=spec)
        path = Path(spec)
        try:
            body = path.read_bytes()
        except OSError as e:
            raise ClientError(f"cannot read spec {path}: {e.strerror or e}") from None
        ctype = "application/json" if path.suffix.lower() == ".json" else "application/yaml"
        return self._json("POST", "/v1/jobs", content=body, headers={"content-type": ctype})

    def list(self, status: str | None = None, mine: bool = False, limit: int = 50) -> list[dict]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if mine:
            params["mine"] = "true"
        return self._json("GET", "/v1/jobs", params=params)["jobs"]

    def get(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{_seg(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/v1/jobs/{_seg(job_id)}/cancel")

    def logs(self, job_id: str, tail: int | None = None) -> str:
        params = {"tail": tail} if tail is not None else None
        return self._request("GET", f"/v1/jobs/{_seg(job_id)}/logs", params=params).text

    def manifest(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{_seg(job_id)}/manifest")

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 2.0,
             on_change: Callable[[dict], None] | None = None) -> dict:
        """Poll until the job is SUCCEEDED, FAILED or STOPPED; its last view. TimeoutError past `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            job = self.get(job_id)
            if on_change and (job["status"], job.get("message")) != last:
                on_change(job)
                last = (job["status"], job.get("message"))
            if job["status"] in TERMINAL:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"job {job_id} is still {job['status']} after {timeout:g} s")
            time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))

    # ------------------------------------------------------------ consumer runs (jobs of kind `consumer`)

    def consumers(self) -> list[dict]:
        """The registered consumers, each with its params' JSON schema."""
        return self._json("GET", "/v1/consumers")["consumers"]

    def run_consumer(self, name: str, params: dict | None = None) -> dict:
        """Queue a run of consumer NAME with PARAMS (or a whole `kind: consumer` spec dict); its view."""
        return self._json("POST", f"/v1/consumers/{_seg(name)}/runs", json=params or {})

    def consumer_runs(self, name: str, status: str | None = None, mine: bool = False, limit: int = 50) -> list[dict]:
        params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {}), **({"mine": "true"} if mine else {})}
        return self._json("GET", f"/v1/consumers/{_seg(name)}/runs", params=params)["runs"]

    def consumer_name(self, run_id: str) -> str:
        """The consumer a run belongs to (from its job spec)."""
        spec = self.get(run_id).get("spec") or {}
        if spec.get("kind") != "consumer":
            raise ClientError(f"job {run_id} is not a consumer run (its kind is {spec.get('kind')!r})")
        return spec["consumer"]["name"]

    def consumer_run(self, run_id: str, name: str | None = None) -> dict:
        """A run's status, progress, params, summary and file links."""
        name = name or self.consumer_name(run_id)
        return self._json("GET", f"/v1/consumers/{_seg(name)}/runs/{_seg(run_id)}")

    def consumer_files(self, run_id: str, name: str | None = None) -> list[dict]:
        name = name or self.consumer_name(run_id)
        return self._json("GET", f"/v1/consumers/{_seg(name)}/runs/{_seg(run_id)}/files")["files"]

    def fetch(self, run_id: str, to_dir: str | os.PathLike, name: str | None = None) -> list[Path]:
        """Download every file of a consumer run into TO_DIR (keeping sub-folders); the paths written."""
        name = name or self.consumer_name(run_id)
        out = Path(to_dir)
        files = self.consumer_files(run_id, name)
        for f in files:
            _check_relpath(f.get("name"))
        written = []
        for f in files:
            target = out.joinpath(*f["name"].split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            path = f"/v1/consumers/{_seg(name)}/runs/{_seg(run_id)}/files/" + "/".join(_seg(p) for p in f["name"].split("/"))
            part = target.with_name(f".{target.name}.part")
            try:
                with self.http.stream("GET", path) as r, open(part, "wb") as fh:
                    if r.status_code >= 400:
                        r.read()
                        raise _service_error(r, "GET", path)
                    for block in r.iter_bytes(CHUNK):
                        fh.write(block)
            except httpx.TransportError as e:
                part.unlink(missing_ok=True)
                raise ClientError(f"GET {path}: {e}") from None
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            os.replace(part, target)
            written.append(target)
        return written

    # ------------------------------------------------------------ pull

    def pull(self, job_id: str, to_dir: str | os.PathLike, workers: int = 4,
             progress: Callable[[str, str, int], None] | None = None) -> PullSummary:
        """Download the job's finished shards and its manifest into `to_dir`.

        `progress(shard_name, outcome, bytes_received)` is called (from worker threads) as each shard
        is done; outcome is one of "downloaded", "resumed", "redownloaded", "skipped".
        A job that is still running gives the shards finished so far (`summary.complete` is False);
        pulling again later fetches only the new ones.
        """
        out = Path(to_dir)
        manifest = self.manifest(job_id)
        shards = manifest.get("shards") or []
        for s in shards:
            _check_entry(s)
        out.mkdir(parents=True, exist_ok=True)
        summary = PullSummary(dir=str(out), shards=len(shards), samples=int(manifest.get("samples") or 0),
                              complete=bool(manifest.get("complete")))
        lock = threading.Lock()

        def one(entry: dict) -> None:
            outcome, received = self._fetch_shard(job_id, entry, out)
            with lock:
                setattr(summary, outcome, getattr(summary, outcome) + 1)
                summary.bytes += received
            if progress:
                progress(entry["name"], outcome, received)

        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="synth2-pull") as pool:
            futures = [pool.submit(one, s) for s in shards]
            try:
                errors = [f.exception() for f in futures]
            except BaseException:  # Ctrl-C: start no more shards (those under way finish, or leave a .part)
                for f in futures:
                    f.cancel()
                raise
        failed = [e for e in errors if e is not None]
        if len(failed) == 1:
            raise failed[0]
        if failed:  # the other shards are in place; a second pull fetches only what is missing
            raise ClientError(f"{len(failed)} of {len(shards)} shards failed: "
                              + "; ".join(str(e) for e in failed[:3]) + ("; ..." if len(failed) > 3 else "")) from failed[0]
        _write_json_atomic(out / "manifest.json", manifest)
        return summary

    def _fetch_shard(self, job_id: str, entry: dict, out: Path) -> tuple[str, int]:
        """One shard to `out/NAME` via `out/NAME.part`: (outcome, bytes received)."""
        name, size, sha = entry["name"], int(entry["bytes"]), entry["sha256"]
        final, part = out / name, out / f"{name}.part"
        if final.is_file():
            if final.stat().st_size == size and _sha256(final) == sha:
                part.unlink(missing_ok=True)
                return "skipped", 0
            final.unlink()  # not this shard (changed or damaged): nothing stays under its name unverified
        offset = part.stat().st_size if part.is_file() else 0
        if offset > size:  # not a prefix of this shard
            part.unlink()
            offset = 0
        received, outcome = 0, "downloaded"
        if offset:
            continued = True
            if offset < size:
                n, continued = self._download(job_id, name, sha, part, offset)
                received += n
            if continued and _sha256(part) == sha:
                os.replace(part, final)
                return "resumed", received
            outcome = "redownloaded"
            if continued:  # the .part's bytes were not the shard's (corrupted): start over once, from zero
                part.unlink(missing_ok=True)
                received += self._download(job_id, name, sha, part, 0)[0]
            # (not continued: the service sent the whole shard instead, and it is in `part` already)
        else:
            received += self._download(job_id, name, sha, part, 0)[0]
        got, digest = part.stat().st_size, _sha256(part)
        if got != size or digest != sha:
            part.unlink(missing_ok=True)
            raise ShardError(f"shard {name} of job {job_id}: received {got} bytes with sha256 {digest[:12]}..., "
                             f"but the manifest lists {size} bytes with sha256 {sha[:12]}...; the partial file "
                             "was removed (pull again to retry)")
        os.replace(part, final)
        return outcome, received

    def _download(self, job_id: str, name: str, sha: str, part: Path, offset: int) -> tuple[int, bool]:
        """Stream the shard into `part`, continuing from `offset` with a range request when offset > 0.
        Returns (bytes received, whether it continued from `offset`): when the service sends the
        whole shard instead (200: its ETag no longer matches; 416), `part` is rewritten from zero."""
        path = f"/v1/jobs/{_seg(job_id)}/shards/{_seg(name)}"
        headers = {"Range": f"bytes={offset}-", "If-Range": f'"{sha}"'} if offset else {}
        received = 0
        try:
            with self.http.stream("GET", path, headers=headers) as r:
                if r.status_code == 416 and offset:  # the service cannot continue from there
                    r.close()
                    part.unlink(missing_ok=True)
                    return self._download(job_id, name, sha, part, 0)[0], False
                if r.status_code >= 400:
                    r.read()
                    raise _service_error(r, "GET", path)
                continued = bool(offset) and r.status_code == 206
                if continued and _content_range_start(r.headers.get("content-range")) != offset:
                    raise ShardError(f"shard {name}: asked for the bytes from {offset} on, the service sent "
                                     f"{r.headers.get('content-range')!r}")
                if r.status_code not in (200, 206) or (r.status_code == 206 and not offset):
                    raise ShardError(f"shard {name}: unexpected answer {r.status_code} to GET {path}")
                with open(part, "ab" if continued else "wb") as f:
                    for block in r.iter_bytes(CHUNK):
                        f.write(block)
                        received += len(block)
                    f.flush()
                    os.fsync(f.fileno())
        except httpx.TimeoutException as e:
            raise ClientError(f"GET {path}: timed out after {received} bytes ({e}); pull again to resume") from None
        except httpx.TransportError as e:
            raise ClientError(f"GET {path}: {e} after {received} bytes; pull again to resume") from None
        return received, continued


# ---------------------------------------------------------------- helpers


def _service_error(r: httpx.Response, method: str, path: str) -> ServiceError:
    try:
        body = r.json()
        detail = body["detail"] if isinstance(body, dict) and "detail" in body else body
    except ValueError:
        detail = r.text.strip()[:500] or r.reason_phrase
    return ServiceError(r.status_code, detail, method, path)


def _seg(s: str) -> str:
    """One URL path segment (a job id or shard name from the user or the service)."""
    from urllib.parse import quote

    return quote(str(s), safe="")


def _check_entry(entry: Any) -> None:
    """A manifest entry the pull can trust to name a file in the target directory, and to check it by."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not name or name in (".", "..", "manifest.json") or any(c in name for c in "/\\\0"):
        raise ClientError(f"the manifest lists a shard named {name!r}, which is not a plain file name; refusing it")
    sha, size = entry.get("sha256"), entry.get("bytes")
    if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)) \
            or not isinstance(size, int) or size < 0:
        raise ClientError(f"the manifest's entry for shard {name} has no valid sha256 and size: {entry}")


def _check_relpath(name: Any) -> None:
    """A file name from the service that stays inside the target directory."""
    parts = name.split("/") if isinstance(name, str) else [""]
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise ClientError(f"the service lists a file named {name!r}, which is not a relative path; refusing it")


def _content_range_start(value: str | None) -> int | None:
    try:  # "bytes 100-199/200"
        unit, rest = value.split(" ", 1)
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except (AttributeError, ValueError):
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
