"""Serving a job's files: shards (local or on object storage, with ranges) and a run's output files."""

from __future__ import annotations

import os
import posixpath

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from contracts.storage import Store


class ShardResponse(FileResponse):
    """Starlette's FileResponse (ranges, If-Range) in 1 MiB pieces instead of 64 KiB: a quarter of the
    service's CPU per GB served (bench/serve_load.py)."""

    chunk_size = 1 << 20


def shard_response(job: dict, entry: dict, request: Request) -> Response:
    """One shard of the manifest: a regular file directly inside the job's output, never through a link."""
    name = entry["name"]
    etag = f'"{entry["sha256"]}"'
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers={"etag": etag})
    store = Store(job["output_dir"])
    headers = {"etag": etag, "cache-control": "private, max-age=31536000, immutable"}
    if store.local:
        root = os.path.realpath(store.root)
        path = os.path.join(root, name)
        if os.path.islink(path) or os.path.dirname(os.path.realpath(path)) != root or not os.path.isfile(path):
            raise HTTPException(404, f"shard {name!r} is not a regular file in the job's output")
        return ShardResponse(path, media_type="application/x-tar", filename=name, headers=headers)
    return remote_file(store, name, entry["bytes"], request, headers)


def remote_file(store: Store, name: str, size: int, request: Request, headers: dict) -> Response:
    """A shard on object storage (fsspec), with single-range support."""
    start, end, status = 0, size - 1, 200
    rng = request.headers.get("range")
    if rng and (request.headers.get("if-range") in (None, headers["etag"])):
        try:
            unit, spec = rng.split("=", 1)
            a, b = spec.split("-", 1)
            if unit.strip() != "bytes" or "," in spec:
                raise ValueError
            start, end = (int(a), min(int(b), size - 1) if b else size - 1) if a else (max(size - int(b), 0), size - 1)
            if start > end or start >= size:
                raise ValueError
            status = 206
        except ValueError:
            return Response(status_code=416, headers={"content-range": f"bytes */{size}"})

    def body():
        with store.fs.open(store.path(name), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                block = f.read(min(left, 1 << 20))
                if not block:
                    break
                left -= len(block)
                yield block

    headers = headers | {"accept-ranges": "bytes", "content-length": str(end - start + 1),
                         "content-disposition": f'attachment; filename="{name}"'}
    if status == 206:
        headers["content-range"] = f"bytes {start}-{end}/{size}"
    return StreamingResponse(body(), status_code=status, media_type="application/x-tar", headers=headers)


def output_files(output_dir: str) -> list[tuple[str, int]]:
    """(relative name, bytes) of every regular file under a run's output, not following links."""
    store = Store(output_dir)
    if not store.local:
        if not store.exists():
            return []
        return sorted((posixpath.relpath(p, store.root), int(info.get("size") or 0))
                      for p, info in store.fs.find(store.root, detail=True).items() if info.get("type") == "file")
    root = os.path.realpath(store.root)
    out = []
    for d, _dirs, files in os.walk(root):  # os.walk does not descend into linked directories
        for f in files:
            full = os.path.join(d, f)
            if not os.path.islink(full) and os.path.isfile(full) and not f.endswith(".tmp"):
                out.append((os.path.relpath(full, root).replace(os.sep, "/"), os.path.getsize(full)))
    return sorted(out)


def output_file(job: dict, path: str) -> Response:
    """One file a run wrote: only regular files inside its output directory, reached without a link."""
    import mimetypes

    parts = path.split("/")
    missing = HTTPException(404, f"run {job['id']} has no file {path!r}")
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise missing
    store = Store(job["output_dir"])
    media = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    # A file a consumer wrote is data: never sniffed, never a page with this origin's rights.
    headers = {"x-content-type-options": "nosniff", "content-security-policy": "sandbox", "cache-control": "no-cache"}
    if store.local:
        root = os.path.realpath(store.root)
        full = os.path.join(root, *parts)
        if os.path.realpath(full) != full or not os.path.isfile(full):  # a link anywhere on the way: refused
            raise missing
        return FileResponse(full, media_type=media, headers=headers)
    if not store.fs.isfile(store.path(*parts)):
        raise missing
    return Response(store.read_bytes(*parts), media_type=media, headers=headers)
