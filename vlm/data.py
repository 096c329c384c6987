"""Training data for the VLM: several WebDataset shard sets mixed by weight.

A source is a shard directory (local or fsspec URL, read through its manifest), a shard URL pattern
(`data-{000000..000009}.tar`), or a synth2 service job (`http(s)://host/v1/jobs/ID`, read through its
`/manifest` and `/shards/NAME` routes with the bearer key in `SYNTH2_API_KEY`). Each source is an
endless stream: shards reshuffled every epoch, split across nodes (ranks) and DataLoader workers,
samples decoded and shuffled in a buffer, corrupt samples and unreadable shards skipped and counted.
`MixedStream` draws each sample's source with a seeded RNG by weight, so a run with the same seed sees
the same samples in the same order, which is how a resumed run lands on the exact data position.
"""

from __future__ import annotations

import json
import logging
import os
import random
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import fsspec
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from contracts.shards import Manifest, decode_npy, iter_tar_raw
from contracts.storage import Store

log = logging.getLogger(__name__)


@dataclass
class Source:
    url: str
    weight: float = 1.0
    name: str = ""

    def __post_init__(self) -> None:
        if not self.weight > 0:
            raise ValueError(f"source {self.url!r}: weight must be > 0 (got {self.weight})")
        self.name = self.name or os.path.basename(self.url.rstrip("/")) or self.url

    @classmethod
    def parse(cls, text: str) -> Source:
        """`PATH_OR_URL` or `PATH_OR_URL@WEIGHT` (e.g. `runs/demo@0.3`)."""
        url, sep, w = text.rpartition("@")
        if sep and w and _is_number(w):
            return cls(url, float(w))
        return cls(text)


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _origin(url: str) -> tuple[str, str, int | None]:
    u = urllib.parse.urlsplit(url)
    return u.scheme, (u.hostname or "").lower(), u.port or {"http": 80, "https": 443}.get(u.scheme)


def _auth_headers(url: str) -> dict[str, str]:
    """SYNTH2_API_KEY, only for the service SYNTH2_URL names (default http://127.0.0.1:8000): a data URL
    elsewhere never receives it."""
    key = os.environ.get("SYNTH2_API_KEY")
    service = os.environ.get("SYNTH2_URL") or "http://127.0.0.1:8000"
    return {"Authorization": f"Bearer {key}"} if key and _origin(url) == _origin(service) else {}


def _open(url: str):
    if _is_http(url):
        req = urllib.request.Request(url)
        for k, v in _auth_headers(url).items():
            req.add_unredirected_header(k, v)  # a redirect (to another host) does not carry the key
        try:
            return urllib.request.urlopen(req, timeout=60)  # noqa: S310 - http(s) only, checked above
        except urllib.error.HTTPError as e:  # status and host only, never the body
            raise OSError(f"{_origin(url)[1]} answered HTTP {e.code} for {urllib.parse.urlsplit(url).path}") from None
    if "://" in url:  # any fsspec URL (s3://, gs://, memory://, file://)
        return fsspec.open(url, "rb").open()
    return open(url, "rb")


def shard_urls(url: str) -> list[str]:
    """The shards a source names, in manifest order."""
    if _is_http(url) and "/v1/jobs/" in url and not url.endswith(".tar"):
        base = url.rstrip("/").removesuffix("/manifest")
        with _open(base + "/manifest") as f:
            manifest = json.load(f)
        return [f"{base}/shards/{s['name']}" for s in manifest["shards"]]
    if url.endswith(".tar") or "{" in url:
        return list(wds.shardlists.expand_urls(url))
    m = Manifest.load(url)
    if m is None:
        raise FileNotFoundError(f"source {url!r}: no manifest.json there, and it is not a .tar URL or pattern")
    store = Store(url)
    return [store.uri(s.name) for s in m.shards]


def decode(sample: dict) -> dict:
    """Raw WebDataset sample → {"key", "emb" float32, "txt", "meta"}; raises on a corrupt or incomplete one."""
    if "emb.npy" not in sample or "txt" not in sample:
        raise ValueError(f"sample {sample.get('__key__')!r} lacks emb.npy or txt (has {sorted(sample)})")
    emb = decode_npy(sample["emb.npy"]).astype(np.float32)
    if emb.ndim not in (1, 2) or not np.isfinite(emb).all():
        raise ValueError(f"sample {sample['__key__']!r}: bad embedding, shape {emb.shape}")
    meta = json.loads(sample["json"]) if "json" in sample else {}
    return {"key": sample["__key__"], "emb": emb, "txt": sample["txt"].decode("utf-8"), "meta": meta}


class ShardStream(IterableDataset):
    """One source as an endless stream of decoded samples, for rank `rank` of `world_size`."""

    def __init__(self, source: Source, seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0, world_size: int = 1,
                 epochs: int | None = None) -> None:
        super().__init__()
        self.source, self.seed, self.buffer = source, seed, shuffle_buffer
        self.rank, self.world_size, self.epochs = rank, world_size, epochs
        self.urls = shard_urls(source.url)
        if not self.urls:
            raise ValueError(f"source {source.url!r} has no shards")
        self.skipped = 0

    def _slot(self) -> tuple[int, int]:
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        return self.rank * nw + wid, self.world_size * nw

    def _handler(self, exn: Exception) -> bool:
        self.skipped += 1
        log.warning("source %s: skipping unreadable data (%s: %s)", self.source.name, type(exn).__name__, exn)
        return True

    def _raw(self, epoch: int, slot: int, slots: int) -> Iterator[dict]:
        order = list(self.urls)
        random.Random(f"{self.seed}-{epoch}-shards").shuffle(order)
        by_shard = len(order) >= slots
        mine = order[slot::slots] if by_shard else order
        streams = ({"url": u, "stream": self._safe_open(u)} for u in mine)
        files = wds.tariterators.tar_file_expander((s for s in streams if s["stream"] is not None), handler=self._handler)
        for i, sample in enumerate(wds.tariterators.group_by_keys(files, handler=self._handler)):
            if not by_shard and i % slots != slot:
                continue
            try:
                yield decode(sample)
            except Exception as e:  # a corrupt sample: count it and go on
                self._handler(e)

    def _safe_open(self, url: str):
        try:
            return _open(url)
        except OSError as e:
            self._handler(e)
            return None

    def __iter__(self) -> Iterator[dict]:
        slot, slots = self._slot()
        epoch = 0
        rng = random.Random(f"{self.seed}-{slot}-buffer")
        while self.epochs is None or epoch < self.epochs:
            got = 0
            shuffle = wds.shuffle(self.buffer, min(100, self.buffer), rng=rng)
            for sample in shuffle(self._raw(epoch, slot, slots)):
                got += 1
                sample["source"], sample["skipped"] = self.source.name, self.skipped
                yield sample
            if got == 0:
                raise RuntimeError(f"source {self.source.url!r}: an epoch yielded no readable sample "
                                   f"({self.skipped} skipped)")
            epoch += 1


class MixedStream(IterableDataset):
    """Samples drawn from several sources by weight (e.g. real 0.7 / synthetic 0.3), endlessly."""

    def __init__(self, sources: list[Source], seed: int = 0, shuffle_buffer: int = 1000, rank: int = 0,
                 world_size: int = 1) -> None:
        super().__init__()
        if not sources:
            raise ValueError("at least one source is needed")
        self.sources = sources
        self.streams = [ShardStream(s, seed + 1000 * i, shuffle_buffer, rank, world_size) for i, s in enumerate(sources)]
        w = np.array([s.weight for s in sources], dtype=np.float64)
        self.probs = w / w.sum()
        self.seed, self.rank = seed, rank

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng([self.seed, self.rank, wid])
        its = [iter(s) for s in self.streams]
        while True:
            yield next(its[int(rng.choice(len(its), p=self.probs))])


def collate(samples: list[dict]) -> dict:
    embs = [torch.from_numpy(s["emb"]) for s in samples]
    return {"emb": torch.stack(embs), "txt": [s["txt"] for s in samples], "source": [s["source"] for s in samples],
            "synthetic": torch.tensor([s["meta"].get("source") == "synthetic" for s in samples]),
            "skipped": {s["source"]: s["skipped"] for s in samples}}


def loader(sources: list[Source], batch_size: int, seed: int = 0, shuffle_buffer: int = 1000, num_workers: int = 0,
           rank: int = 0, world_size: int = 1) -> DataLoader:
    """An endless DataLoader of mixed batches; deterministic for a given seed, rank and worker count."""
    ds = MixedStream(sources, seed, shuffle_buffer, rank, world_size)
    return DataLoader(ds, batch_size=batch_size, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0)


def iter_source(url: str) -> Iterator[dict]:
    """Every sample of a source once, in manifest order, decoded; `png` kept when present."""
    for u in shard_urls(url):
        with _open(u) as f:
            for raw in iter_tar_raw(f):
                s = decode(raw)
                if "png" in raw:
                    s["png"] = raw["png"]
                yield s


def read_all(url: str) -> list[dict]:
    """Every sample of a source (evaluation)."""
    return list(iter_source(url))
