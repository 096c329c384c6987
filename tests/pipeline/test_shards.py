import json
import tarfile

import numpy as np
import pytest

from contracts.shards import Manifest, ShardWriter, iter_samples, make_sample, sample_key, sha256_file, shard_paths


def _samples(n, start=0):
    for i in range(start, start + n):
        yield make_sample(sample_key("job", i), f"caption {i}", np.full(8, i, np.float32), {"source": "synthetic", "i": i})


def test_keys_are_stable_and_distinct():
    assert sample_key("job", 3) == sample_key("job", 3)
    assert len({sample_key("job", i) for i in range(1000)}) == 1000
    assert sample_key("job", 3) != sample_key("other", 3)


def test_writer_shards_manifest_and_contract(tmp_path):
    w = ShardWriter(tmp_path, "demo", shard_size=4)
    w.write_all(_samples(10))
    m = w.close()
    assert [s.name for s in m.shards] == ["demo-000000.tar", "demo-000001.tar", "demo-000002.tar"]
    assert [s.samples for s in m.shards] == [4, 4, 2] and m.complete
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    for s in on_disk["shards"]:
        assert sha256_file(tmp_path / s["name"]) == s["sha256"]
        assert (tmp_path / s["name"]).stat().st_size == s["bytes"]
    got = list(iter_samples(tmp_path))
    assert [g["txt"] for g in got] == [f"caption {i}" for i in range(10)]
    assert got[3]["emb.npy"].dtype == np.float16 and got[3]["emb.npy"][0] == 3
    assert got[0]["json"]["source"] == "synthetic"
    with tarfile.open(tmp_path / "demo-000000.tar") as t:
        names = t.getnames()
    assert names[:3] == [f"{sample_key('job', 0)}.{e}" for e in ("emb.npy", "json", "txt")]
    assert len(names) == 4 * 3


def test_shards_are_readable_by_webdataset(tmp_path):
    import webdataset as wds

    w = ShardWriter(tmp_path, "demo", shard_size=3)
    w.write_all(_samples(7))
    w.close()
    ds = wds.WebDataset([str(p) for p in shard_paths(tmp_path)], shardshuffle=False).decode()
    rows = list(ds)
    assert len(rows) == 7
    assert rows[5]["txt"] == "caption 5" and rows[5]["json"]["i"] == 5
    assert rows[5]["emb.npy"].shape == (8,)


def test_crash_leaves_no_partial_shard_and_resume_continues(tmp_path):
    w = ShardWriter(tmp_path, "demo", shard_size=4)
    w.write_all(_samples(6))  # one full shard, two samples buffered, then the process "dies"
    (tmp_path / "demo-000001.tar.tmp").write_bytes(b"half a shard")
    (tmp_path / "demo-000002.tar").write_bytes(b"renamed, but the manifest was never updated")
    assert Manifest.load(tmp_path).samples == 4 and not Manifest.load(tmp_path).complete
    w2 = ShardWriter(tmp_path, "demo", shard_size=4)
    assert not (tmp_path / "demo-000001.tar.tmp").exists()
    assert not (tmp_path / "demo-000002.tar").exists()
    assert w2.start_index == 4
    w2.write_all(_samples(6, start=w2.start_index))
    m = w2.close()
    assert [g["txt"] for g in iter_samples(tmp_path)] == [f"caption {i}" for i in range(10)]
    assert m.samples == 10


def test_identical_content_gives_identical_bytes(tmp_path):
    for d in ("a", "b"):
        w = ShardWriter(tmp_path / d, "demo", shard_size=5)
        w.write_all(_samples(5))
        w.close()
    assert sha256_file(tmp_path / "a" / "demo-000000.tar") == sha256_file(tmp_path / "b" / "demo-000000.tar")


def test_bad_inputs_are_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError, match="not a directory"):
        ShardWriter(f, "demo", 4)
    with pytest.raises(ValueError, match="shard_size"):
        ShardWriter(tmp_path / "d", "demo", 0)
    with pytest.raises(ValueError, match="source"):
        make_sample("k", "t", None, {"source": "imagined"})
    with pytest.raises(FileNotFoundError, match="manifest"):
        shard_paths(tmp_path)


def test_writer_and_reader_work_on_any_fsspec_filesystem():
    import fsspec

    url = "memory://synth2-test/shards"
    w = ShardWriter(url, "demo", shard_size=4)
    w.write_all(_samples(9))
    m = w.close()
    assert Manifest.load(url).samples == 9 and m.complete
    assert [s["txt"] for s in iter_samples(url)] == [f"caption {i}" for i in range(9)]
    fs = fsspec.filesystem("memory")
    assert sorted(p.rsplit("/", 1)[1] for p in fs.ls("/synth2-test/shards", detail=False)) == [
        "demo-000000.tar", "demo-000001.tar", "demo-000002.tar", "manifest.json"]
    first = shard_paths(url)[0]
    assert first.startswith("memory://") and first.endswith("/synth2-test/shards/demo-000000.tar")
    with fsspec.open(first, "rb") as f:
        assert len(f.read()) == m.shards[0].bytes
