"""A job directory on any fsspec filesystem: a local path, `s3://`, `gs://`, `memory://`, ...

Writes that must never be seen half-done (shards, manifests, stage outputs) go to a temporary
name and are moved into place; on a local disk that move is an atomic rename.
"""

from __future__ import annotations

import io
import json
import posixpath
from pathlib import Path
from typing import Any

import fsspec
import numpy as np


class Store:
    def __init__(self, url: str | Path) -> None:
        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except ImportError as e:
            scheme = self.url.split("://", 1)[0] if "://" in self.url else "file"
            raise ImportError(f"output {self.url!r}: no filesystem for {scheme}:// ({e}); "
                              "install the cloud extra: pip install 'synth2[cloud]'") from e
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """A path another process can open (`fsspec.open` or, locally, plain `open`)."""
        p = self.path(*parts)
        return p if self.local else self.fs.unstrip_protocol(p)

    def exists(self, *parts: str) -> bool:
        return self.fs.exists(self.path(*parts))

    def is_file(self) -> bool:
        return self.fs.isfile(self.root)

    def makedirs(self, *parts: str) -> None:
        self.fs.makedirs(self.path(*parts), exist_ok=True)

    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.path(*parts))

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write to `name.tmp`, then move over `name`."""
        final = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = final + ".tmp"
        with self.fs.open(tmp, "wb") as f:
            f.write(data)
            if self.local:
                f.flush()
                import os

                os.fsync(f.fileno())
        self.fs.mv(tmp, final)

    def read_json(self, *parts: str) -> Any:
        return json.loads(self.read_bytes(*parts))

    def write_json(self, obj: Any, *parts: str) -> None:
        self.write_bytes(json.dumps(obj, indent=1, sort_keys=True).encode(), *parts)

    def save_npz(self, *parts: str, **arrays: np.ndarray) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self.write_bytes(buf.getvalue(), *parts)

    def load_npz(self, *parts: str, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """The arrays of an .npz (only `keys`, if given: the others are not decoded)."""
        with np.load(io.BytesIO(self.read_bytes(*parts)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files if keys is None or k in keys}

    def glob(self, pattern: str) -> list[str]:
        """Names (relative to the root) matching `pattern`, sorted."""
        return sorted(posixpath.relpath(p, self.root) for p in self.fs.glob(self.path(pattern)))

    def remove(self, *parts: str) -> None:
        p = self.path(*parts)
        if self.fs.exists(p):
            self.fs.rm(p, recursive=True)
