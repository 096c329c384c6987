"""The sample, shard and manifest contract (ARCHITECTURE.md). No Ray here.

A shard is written under a temporary name and renamed once complete; `manifest.json` is
rewritten (atomically) after every shard, so a shard listed in the manifest is whole and a
shard not listed does not exist. A writer opened on a directory that already has a manifest
continues after its last shard, which is how a crashed job resumes.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import fsspec
import numpy as np

from contracts.storage import Store

MANIFEST = "manifest.json"
CONTRACT_VERSION = 1


def sample_key(job_id: str, index: int) -> str:
    """Stable sample id: a hash of the job id and the caption index (same job, same keys)."""
    return hashlib.sha1(f"{job_id}:{index}".encode()).hexdigest()[:16]


def encode_npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def make_sample(key: str, txt: str, emb: np.ndarray | None, meta: dict[str, Any],
                png: bytes | None = None) -> dict[str, bytes | str]:
    """One WebDataset sample in the contract: `txt`, `emb.npy` (float16), `json`, optional `png`."""
    if "source" not in meta or meta["source"] not in ("synthetic", "real"):
        raise ValueError(f"sample json needs source 'synthetic' or 'real' (got {meta.get('source')!r})")
    sample: dict[str, bytes | str] = {"__key__": key, "txt": txt.encode("utf-8"),
                                      "json": json.dumps(meta, sort_keys=True).encode("utf-8")}
    if emb is not None:
        sample["emb.npy"] = encode_npy(np.asarray(emb, dtype=np.float16))
    if png is not None:
        sample["png"] = png
    return sample


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ShardInfo:
    name: str
    samples: int
    bytes: int
    sha256: str
    first_index: int


@dataclass
class Manifest:
    """A shard set's index, and what its samples are.

    `embedding`: `{"key": "emb.npy", "dim": D, "dtype": "float16", "normalization": "l2" | None}` (None for
    shards without embeddings); `models`: each model the job loaded, as its spec names it, with the sha256 of
    its files or its hub revision; `created_at` (UTC, ISO 8601) and `synth2_version`. Manifests written before
    these fields existed load with them None.
    """

    name: str
    shards: list[ShardInfo] = field(default_factory=list)
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    complete: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    synth2_version: str | None = None
    embedding: dict[str, Any] | None = None
    models: list[dict[str, Any]] | None = None

    DESCRIBED = ("created_at", "synth2_version", "embedding", "models")

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {"version": CONTRACT_VERSION, "name": self.name, "samples": self.samples,
                "complete": self.complete, "spec_hash": self.spec_hash,
                **{k: getattr(self, k) for k in self.DESCRIBED}, "spec": self.spec,
                "shards": [vars(s) for s in self.shards], **self.extra}

    @classmethod
    def load(cls, directory: str | Path) -> Manifest | None:
        """The manifest of a local directory or fsspec URL, or None if it has none."""
        store = Store(directory)
        if not store.exists(MANIFEST):
            return None
        d = store.read_json(MANIFEST)
        known = {"version", "name", "samples", "complete", "spec_hash", "spec", "shards", *cls.DESCRIBED}
        return cls(name=d["name"], shards=[ShardInfo(**s) for s in d["shards"]], spec=d.get("spec"),
                   spec_hash=d.get("spec_hash"), complete=d.get("complete", False),
                   extra={k: v for k, v in d.items() if k not in known}, **{k: d.get(k) for k in cls.DESCRIBED})

    def save(self, directory: str | Path) -> None:
        Store(directory).write_json(self.to_dict(), MANIFEST)


class ShardWriter:
    """Writes samples into `{name}-{000000}.tar` shards of `shard_size` samples under `directory`.

    Resumes from the directory's manifest: `start_index` tells the caller which sample index
    the next `write` must be (samples before it are already in finished shards). Leftover
    temporary files from a crash are removed.
    """

    def __init__(self, directory: str | Path, name: str, shard_size: int,
                 spec: dict[str, Any] | None = None, spec_hash: str | None = None) -> None:
        if shard_size < 1:
            raise ValueError(f"shard_size must be >= 1 (got {shard_size})")
        self.store = Store(directory)
        if self.store.is_file():
            raise NotADirectoryError(f"output directory {directory} exists and is not a directory")
        self.store.makedirs()
        for stale in self.store.glob(f"{name}-*.tar.tmp"):
            self.store.remove(stale)
        self.manifest = Manifest.load(directory) or Manifest(name=name, spec=spec, spec_hash=spec_hash,
                                                             created_at=utc_now())
        if self.manifest.name != name:
            raise ValueError(f"{directory} holds shards named {self.manifest.name!r}, not {name!r}")
        # A crash between a shard's rename and the manifest update leaves a whole shard the
        # manifest does not list; it does not exist for readers, and the resumed run rewrites it.
        listed = {s.name for s in self.manifest.shards}
        for orphan in self.store.glob(f"{name}-*.tar"):
            if orphan not in listed:
                self.store.remove(orphan)
        self.name, self.shard_size = name, shard_size
        self._buffer: list[dict] = []

    @property
    def start_index(self) -> int:
        return self.manifest.samples

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    def write(self, sample: dict) -> ShardInfo | None:
        """Add a sample; returns the shard's info when this sample completed one."""
        self._buffer.append(sample)
        if len(self._buffer) >= self.shard_size:
            return self._flush()
        return None

    def write_all(self, samples: Iterable[dict]) -> None:
        for s in samples:
            self.write(s)

    def _flush(self) -> ShardInfo | None:
        if not self._buffer:
            return None
        info = write_shard(self.store, shard_name(self.name, len(self.manifest.shards)), self._buffer,
                           self.manifest.samples)
        self.manifest.shards.append(info)
        self.store.write_json(self.manifest.to_dict(), MANIFEST)
        self._buffer = []
        return info

    def close(self, complete: bool = True) -> Manifest:
        """Write the last (possibly short) shard and mark the manifest complete."""
        self._flush()
        self.manifest.complete = complete
        if self.manifest.embedding is None and self.manifest.shards:
            self.manifest.embedding = embedding_info(self.store.uri(self.manifest.shards[0].name))
        self.store.write_json(self.manifest.to_dict(), MANIFEST)
        return self.manifest


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def embedding_info(shard: str | Path, normalization: str | None = None) -> dict[str, Any] | None:
    """The manifest's `embedding` from a shard's first sample with an `emb.npy`: dimension (the last axis; `shape`
    too for token grids), dtype and `normalization` — as the writer declares it, else "l2" when that sample's
    norm is 1 within float16 precision. None when the shard has no embeddings."""
    for sample in iter_tar(shard):
        emb = sample.get("emb.npy")
        if emb is None:
            continue
        norm = normalization
        if norm is None and emb.ndim == 1:
            norm = "l2" if abs(float(np.linalg.norm(emb.astype(np.float32))) - 1.0) < 1e-2 else None
        info = {"key": "emb.npy", "dim": int(emb.shape[-1]), "dtype": str(emb.dtype), "normalization": norm}
        return info | ({"shape": list(emb.shape)} if emb.ndim > 1 else {})
    return None


def shard_name(name: str, k: int) -> str:
    return f"{name}-{k:06d}.tar"


def tar_bytes(samples: Iterable[dict]) -> bytes:
    """Samples as one tar (USTAR, mtime 0): the same samples always give the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for sample in samples:
            _add_sample(tar, sample)
    return raw.getvalue()


def write_shard(store: Store, name: str, samples: list[dict], first_index: int) -> ShardInfo:
    """Write one whole shard (temporary name, then rename) and describe it for the manifest.
    Workers call this; the driver only commits the returned ShardInfo."""
    data = tar_bytes(samples)
    store.write_bytes(data, name)
    return ShardInfo(name, len(samples), len(data), hashlib.sha256(data).hexdigest(), first_index)


def _add_sample(tar: tarfile.TarFile, sample: dict) -> None:
    key = sample["__key__"]
    for ext in sorted(k for k in sample if not k.startswith("__")):
        data = sample[ext]
        if isinstance(data, str):
            data = data.encode("utf-8")
        info = tarfile.TarInfo(f"{key}.{ext}")
        info.size = len(data)
        info.mtime = 0  # identical content gives identical bytes, hence identical sha256
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))


def shard_paths(directory: str | Path) -> list[str]:
    """The finished shards of a directory or URL, in order, as its manifest lists them."""
    m = Manifest.load(directory)
    if m is None:
        raise FileNotFoundError(f"no {MANIFEST} in {directory}: not a synth2 shard directory")
    store = Store(directory)
    return [store.uri(s.name) for s in m.shards]


def iter_samples(directory: str | Path) -> Iterator[dict]:
    """Samples of a shard directory, decoded: txt as str, json as dict, emb.npy as array."""
    for path in shard_paths(directory):
        yield from iter_tar(path)


def iter_tar(path: str | Path) -> Iterator[dict]:
    """The samples of one shard (a path or fsspec URL), decoded: txt as str, json as dict, *npy as array."""
    with fsspec.open(str(path), "rb") as f:
        for raw in iter_tar_raw(f):
            yield {k: _decode_field(k, v) for k, v in raw.items()}


def _decode_field(ext: str, data: Any) -> Any:
    if ext == "__key__":
        return data
    if ext == "txt":
        return data.decode("utf-8")
    if ext == "json":
        return json.loads(data)
    if ext.endswith("npy"):
        return decode_npy(data)
    return data


def iter_tar_raw(f, *, strict: bool = False) -> Iterator[dict]:
    """The samples of a WebDataset tar stream as raw `{"__key__": key, ext: bytes, ...}`: consecutive files
    whose names share a key (the path up to the first dot of the file name) form one sample, the
    WebDataset convention. `strict` (a seekable file) also rejects data after the last member other
    than the archive's zero padding (tarfile stops quietly at a damaged header): tarfile.ReadError."""
    current: dict[str, Any] = {}
    with tarfile.open(fileobj=f, mode="r:" if strict else "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            head, _, base = member.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{head}/{stem}" if head else stem
            if current and current["__key__"] != key:
                yield current
                current = {}
            current["__key__"] = key
            current[ext] = tar.extractfile(member).read()
        end = tar.offset
    if current:
        yield current
    if strict:
        f.seek(end)
        if f.read().strip(b"\0"):
            raise tarfile.ReadError(f"unreadable data after byte {end}")
