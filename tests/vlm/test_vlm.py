"""The VLM: model, loader, training (resume, Ray Train), evaluation — on the tiny world's LM and shards."""

from __future__ import annotations

import http.server
import io
import json
import tarfile
import threading
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts.shards import ShardWriter, make_sample, sample_key
from vlm.data import MixedStream, ShardStream, Source, loader, read_all, shard_urls
from vlm.evaluate import attribute_hits, coco_scores, evaluate, world_scores
from vlm.model import SynthVLM, VLMConfig
from vlm.train import TrainConfig, latest_checkpoint, train


def _write_source(d: Path, name: str, n: int, dim: int = 16, shard: int = 50, source: str = "synthetic",
                  seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    w = ShardWriter(d, name, shard)
    for i in range(n):
        w.write(make_sample(sample_key(name, i), f"{name} caption {i}", rng.normal(size=dim).astype(np.float32),
                            {"source": source, "encoder": "test-encoder"}))
    w.close()
    return d


@pytest.fixture(scope="module")
def lm(tiny_world):
    return str(tiny_world[0] / "lm")


# ------------------------------------------------------------------ model


@pytest.mark.parametrize("mapper", ["mlp", "transformer"])
@pytest.mark.parametrize("grid", [False, True])
def test_forward_backward_and_reload(tmp_path, lm, mapper, grid):
    torch.manual_seed(0)
    m = SynthVLM.create(VLMConfig(decoder=lm, embed_dim=24, encoder="enc-x", prefix_length=3, mapper=mapper,
                                  mapper_hidden=32, mapper_layers=1))
    emb = torch.randn(5, 7, 24) if grid else torch.randn(5, 24)
    toks = m.tokenize(["a red circle", "two blue stars", "a green square above a pink star", "x", "three cyan hexagons"])
    loss = m(emb, **toks)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    # every mapper parameter learns, except the transformer mapper's input projection for the other input form
    unused = {"grid_proj" if not grid else "proj"} if mapper == "transformer" else set()
    assert all(p.grad is not None for n, p in m.mapper.named_parameters() if n.split(".")[0] not in unused)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.decoder.parameters())
    m.eval()
    m.save_pretrained(tmp_path / "ck")
    r = SynthVLM.from_pretrained(tmp_path / "ck")
    assert r.config.encoder == "enc-x" and r.config.mapper == mapper
    for (k, a), (_, b) in zip(m.state_dict().items(), r.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(m(emb, **toks), r(emb, **toks))
    assert m.generate(emb[:2]) == r.generate(emb[:2])
    assert len(r.generate(emb[:2], num_beams=2)) == 2


def test_frozen_decoder_is_referenced_not_copied(tmp_path, lm):
    m = SynthVLM.create(VLMConfig(decoder=lm, embed_dim=8, freeze_decoder=True))
    assert not any(p.requires_grad for p in m.decoder.parameters())
    assert all(p.requires_grad for p in m.mapper.parameters())
    m.save_pretrained(tmp_path / "ck")
    assert not (tmp_path / "ck" / "decoder").exists()
    r = SynthVLM.from_pretrained(tmp_path / "ck")
    emb = torch.randn(2, 8)
    toks = m.tokenize(["a", "b"])
    m.eval()
    assert torch.equal(m(emb, **toks), r(emb, **toks))


def test_bad_checkpoint_and_decoder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a synth2 VLM checkpoint"):
        SynthVLM.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="cannot load decoder"):
        SynthVLM.create(VLMConfig(decoder=str(tmp_path / "nope"), embed_dim=8))
    with pytest.raises(ValueError, match="mapper"):
        TrainConfig(sources=["x"], decoder="d", out="o", mapper="conv")


# ------------------------------------------------------------------ data


def test_mixing_ratio(tmp_path):
    a = _write_source(tmp_path / "real", "real", 300, source="real")
    b = _write_source(tmp_path / "syn", "syn", 300, seed=1)
    ds = MixedStream([Source(str(a), 0.7), Source(str(b), 0.3)], seed=3, shuffle_buffer=64)
    counts = Counter(s["source"] for s in islice(iter(ds), 6000))
    share = counts["real"] / 6000
    assert abs(share - 0.7) < 0.025, counts  # binomial sd ~0.006
    # same seed → same stream; another seed → another order
    first = [s["key"] for s in islice(iter(MixedStream([Source(str(a), 0.7), Source(str(b), 0.3)], seed=3)), 50)]
    again = [s["key"] for s in islice(iter(MixedStream([Source(str(a), 0.7), Source(str(b), 0.3)], seed=3)), 50)]
    other = [s["key"] for s in islice(iter(MixedStream([Source(str(a), 0.7), Source(str(b), 0.3)], seed=4)), 50)]
    assert first == again and first != other
    batch = next(iter(loader([Source(str(a)), Source(str(b))], 8)))
    assert batch["emb"].shape == (8, 16) and len(batch["txt"]) == 8


def test_fsspec_source_reads_memory_url(tmp_path):
    """A shard directory on any fsspec filesystem (memory:// here, s3:// alike) trains and evaluates."""
    import fsspec

    fs = fsspec.filesystem("memory")
    try:
        url = "memory://synth2-vlm-test/shards"  # the memory filesystem is shared by the whole test process
        _write_source(url, "mem", 30, shard=10)
        local = _write_source(tmp_path / "local", "mem", 30, shard=10)
        assert shard_urls(url)[0].startswith("memory://") and len(shard_urls(url)) == 3
        assert [s["key"] for s in read_all(url)] == [s["key"] for s in read_all(str(local))]
        mem = [s["key"] for s in islice(iter(ShardStream(Source(url), seed=1, shuffle_buffer=8)), 45)]
        loc = [s["key"] for s in islice(iter(ShardStream(Source(str(local)), seed=1, shuffle_buffer=8)), 45)]
        assert mem == loc and len(set(mem[:30])) > 20  # the same seeded order as the local copy
    finally:
        fs.rm("/synth2-vlm-test", recursive=True)


def test_source_parsing():
    assert Source.parse("runs/demo@0.3") == Source("runs/demo", 0.3)
    assert Source.parse("runs/demo").weight == 1.0
    with pytest.raises(ValueError, match="weight must be > 0"):
        Source.parse("runs/demo@0")


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    d = _write_source(tmp_path / "ok", "ok", 40, shard=20)
    bad = tmp_path / "bad"
    bad.mkdir()
    # a shard with a corrupt embedding, a sample without text, and two good samples
    with tarfile.open(bad / "bad-000000.tar", "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        good = make_sample("g1", "good one", np.ones(16, np.float32), {"source": "real"})
        for ext in ("txt", "emb.npy", "json"):
            add(f"g1.{ext}", good[ext] if isinstance(good[ext], bytes) else good[ext].encode())
        add("c1.txt", b"corrupt")
        add("c1.emb.npy", b"\x93NUMPY garbage")
        add("n1.emb.npy", good["emb.npy"])
        add("g2.txt", b"good two")
        add("g2.emb.npy", good["emb.npy"])
    # a truncated shard: half of a good one
    full = (d / "ok-000000.tar").read_bytes()
    (bad / "bad-000001.tar").write_bytes(full[: len(full) // 2 + 100])
    stream = ShardStream(Source(str(bad / "bad-{000000..000001}.tar")), shuffle_buffer=1, epochs=1)
    got = list(stream)
    keys = {s["key"] for s in got}
    assert {"g1", "g2"} <= keys and "c1" not in keys and "n1" not in keys
    assert stream.skipped >= 3  # corrupt emb, missing txt, truncated tar
    assert 2 < len(got) < 2 + 20  # some of the truncated shard's samples came through before the cut


def test_rank_split_is_disjoint(tmp_path):
    d = _write_source(tmp_path / "s", "s", 200, shard=25)
    seen = []
    for rank in range(2):
        seen.append({s["key"] for s in ShardStream(Source(str(d)), rank=rank, world_size=2, epochs=1)})
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 200


class _ServiceLike(http.server.BaseHTTPRequestHandler):
    root: Path
    key = "secret"

    def do_GET(self):  # noqa: N802
        if self.headers.get("Authorization") != f"Bearer {self.key}":
            self.send_response(401)
            self.end_headers()
            return
        prefix = "/v1/jobs/j1/"
        name = self.path.removeprefix(prefix).removeprefix("shards/").replace("manifest", "manifest.json")
        path = self.root / name
        if not self.path.startswith(prefix) or not path.is_file():
            self.send_response(404)
            self.end_headers()
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


def test_http_source_reads_a_service_job(tmp_path, monkeypatch):
    d = _write_source(tmp_path / "s", "s", 60, shard=25)
    handler = type("H", (_ServiceLike,), {"root": d})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/jobs/j1"
        monkeypatch.setenv("SYNTH2_API_KEY", "secret")
        monkeypatch.setenv("SYNTH2_URL", f"http://127.0.0.1:{server.server_address[1]}")  # the key goes there only
        assert shard_urls(url) == [f"{url}/shards/s-00000{i}.tar" for i in range(3)]
        assert [s["key"] for s in read_all(url)] == [s["key"] for s in read_all(str(d))]
        monkeypatch.setenv("SYNTH2_API_KEY", "wrong")
        with pytest.raises(OSError):
            shard_urls(url)
    finally:
        server.shutdown()


# ------------------------------------------------------------------ training


def _cfg(tmp_path, lm, tiny_world, **kw):
    w = tiny_world[0]
    base = dict(sources=[f"{w / 'data' / 'train'}@0.7", f"{w / 'data' / 'pretrain'}@0.3"], decoder=lm,
                out=str(tmp_path / "run"), steps=8, batch_size=8, ckpt_every=4, log_every=2, threads=1,
                progress=False, shuffle_buffer=32, noise_std=0.05, noise_on="all")
    return TrainConfig(**{**base, **kw})


def test_train_writes_model_metrics_plot(tmp_path, lm, tiny_world):
    res = train(_cfg(tmp_path, lm, tiny_world))
    out = tmp_path / "run"
    assert res["steps"] == 8 and res["embed_dim"] == tiny_world[1]["models"]["clip"]["embed_dim"]
    assert res["encoder"].startswith("local-dir:")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]
    assert (out / "loss.png").stat().st_size > 1000
    assert SynthVLM.from_pretrained(out / "model").config.encoder == res["encoder"]
    assert latest_checkpoint(out).name == "step-8"
    # another run's settings in the same directory: refused, naming the difference; --force starts over
    with pytest.raises(ValueError, match=r"lr=0.001"):
        train(_cfg(tmp_path, lm, tiny_world, lr=5e-4))
    train(_cfg(tmp_path, lm, tiny_world, lr=5e-4, steps=2, ckpt_every=1), force=True)
    assert [c.name for c in sorted((out / "checkpoints").iterdir())] == ["step-1", "step-2"]


def test_resume_equals_uninterrupted(tmp_path, lm, tiny_world):
    train(_cfg(tmp_path / "a", lm, tiny_world, out=str(tmp_path / "a")))
    train(_cfg(tmp_path / "b", lm, tiny_world, out=str(tmp_path / "b"), stop_at=3))
    assert latest_checkpoint(tmp_path / "b").name == "step-3"
    train(_cfg(tmp_path / "b", lm, tiny_world, out=str(tmp_path / "b")))
    a = SynthVLM.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = SynthVLM.from_pretrained(tmp_path / "b" / "model").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    la = [json.loads(x)["loss"] for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


def test_ray_train_two_workers(tmp_path, lm, tiny_world, ray_local):
    from vlm.train import train_ray

    res = train_ray(_cfg(tmp_path, lm, tiny_world, steps=4, ckpt_every=2), num_workers=2)
    assert res["world_size"] == 2 and res["steps"] == 4
    assert (tmp_path / "run" / "model" / "vlm_config.json").exists()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4 and np.isfinite(rows[-1]["loss"])


# ------------------------------------------------------------------ evaluation


def test_coco_scores_agree_with_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    preds = ["a red circle", "two blue stars in the corner", "a green square"]
    refs = [["a red circle", "there is a red circle"], ["two blue stars", "a pair of blue stars"], ["a pink star"]]
    got = coco_scores(preds, refs)
    gts = {i: r for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    assert got["bleu4"] == pytest.approx(Bleu(4).compute_score(gts, res, verbose=0)[0][3])
    assert got["cider"] == pytest.approx(Cider().compute_score(gts, res)[0])
    perfect = coco_scores(["a red circle on the left"] * 2, [["a red circle on the left"], ["a red circle on the left"]])
    assert perfect["bleu4"] == pytest.approx(1.0, abs=1e-6)
    # BLEU-1 by hand: "a blue circle" vs "a red circle": 2 of 3 unigrams match, same length
    assert coco_scores(["a blue circle"], [["a red circle"]])["bleu1"] == pytest.approx(2 / 3, abs=1e-6)
    # punctuation and case do not matter
    assert coco_scores(["A red circle."], [["a red circle"]])["bleu1"] == pytest.approx(1.0, abs=1e-6)


def test_attribute_hits_on_hand_made_captions():
    from generators.world.annotate import parse
    from generators.world.concepts import Obj, Scene

    true = Scene("single", (Obj("red", "circle", "small"),), position="top left")
    h = attribute_hits(parse("a small red circle in the top left corner"), true)
    assert h["scene"] and h["colour"] and h["position"] and h["relation"] is None
    h = attribute_hits(parse("a large red square in the top left corner"), true)
    assert h["colour"] and not h["shape"] and not h["size"] and h["position"] and not h["composition"]
    h = attribute_hits(parse("gibberish"), true)
    assert not any(v for v in h.values() if v is not None)
    rel = Scene("relation", (Obj("red", "star"), Obj("blue", "circle")), relation="above")
    h = attribute_hits(parse("a red star below a blue circle"), rel)
    assert h["composition"] and not h["relation"] and not h["scene"] and h["size"] is None
    # the same image in the other wording is right on every attribute; swapped objects alone are not
    h = attribute_hits(parse("a blue circle below a red star"), rel)
    assert h["composition"] and h["relation"] and h["scene"] and h["colour"] and h["shape"]
    h = attribute_hits(parse("a blue circle above a red star"), rel)
    assert h["composition"] and not h["relation"] and not h["scene"]
    # colours and shapes right but bound to the wrong objects: not the composition
    h = attribute_hits(parse("a blue star above a red circle"), rel)
    assert h["colour"] and h["shape"] and not h["composition"] and not h["relation"]
    # the right relation word about the wrong objects is not the arrangement
    assert not attribute_hits(parse("a green square above a pink hexagon"), rel)["relation"]
    ws = world_scores(["a small red circle in the top left corner", "nonsense"],
                      [{"scene": true.to_dict(), "held_out": True}, {"scene": true.to_dict(), "held_out": False}])
    assert ws["parse_rate"] == 0.5 and ws["held_out_composition"]["accuracy"] == 1.0
    assert ws["seen_composition"]["accuracy"] == 0.0
    assert ws["composition_by_kind"] == {"single": {"seen": {"accuracy": 0.0, "n": 1},
                                                    "held_out": {"accuracy": 1.0, "n": 1}}}
    ws = world_scores(["a red star above a blue circle", "a small red circle in the top left corner"],
                      [{"scene": rel.to_dict(), "held_out": True}, {"scene": true.to_dict(), "held_out": True}])
    assert ws["composition_by_kind"]["relation"]["held_out"] == {"accuracy": 1.0, "n": 1}
    assert ws["composition_by_kind"]["relation"]["seen"] == {"accuracy": None, "n": 0}


def test_evaluate_end_to_end(tmp_path, lm, tiny_world):
    from click.testing import CliRunner

    from synth2.cli import main

    train(_cfg(tmp_path, lm, tiny_world, steps=4))
    test = str(tiny_world[0] / "data" / "test")
    res = evaluate(tmp_path / "run" / "model", test, beams=(1, 2), limit=24, out=tmp_path / "eval.json")
    assert res["samples"] == 24 and res["images_encoded"]
    for name in ("greedy", "beam2"):
        r = res["decoding"][name]
        assert 0 <= r["bleu4"] <= 1 and r["cider"] >= 0
        w = r["world"]
        assert 0 <= w["parse_rate"] <= 1 and set(w["attributes"]) >= {"colour", "shape", "count", "relation"}
    assert json.loads((tmp_path / "eval.json").read_text())["samples"] == 24
    # through the stored embeddings the image tower gave: the same numbers as encoding the pngs
    stored = evaluate(tmp_path / "run" / "model", test, beams=(1,), limit=24, use_images=False)
    assert not stored["images_encoded"]
    r = CliRunner().invoke(main, ["vlm", "eval", "--model", str(tmp_path / "run" / "model"), "--data", test,
                                  "--beams", "1", "--limit", "8"])
    assert r.exit_code == 0, r.output
    assert "| greedy |" in r.output and "held-out" in r.output
    r = CliRunner().invoke(main, ["vlm", "eval", "--model", str(tmp_path / "run" / "model"), "--data", test,
                                  "--beams", "x"])
    assert r.exit_code != 0 and "--beams" in r.output


def test_vlm_consumer_run(tmp_path, lm, tiny_world):
    from contracts.registry import run_consumer

    w = tiny_world[0]
    res = run_consumer("vlm", {"data": [f"{w / 'data' / 'train'}@0.5", f"{w / 'data' / 'pretrain'}@0.5"], "decoder": lm,
                               "test": str(w / "data" / "test"), "steps": 3, "batch_size": 4, "eval_limit": 6,
                               "threads": 1}, str(tmp_path / "run"))
    assert {"train/model/vlm_config.json", "eval.json", "train/loss.png"} <= set(res["files"])
    assert 0 <= res["summary"]["eval"]["greedy"]["cider"] and res["summary"]["train"]["steps"] == 3
    progress = json.loads((tmp_path / "run" / "progress.json").read_text())
    assert progress["status"] == "SUCCEEDED"


def test_progress_without_a_terminal_writes_plain_lines():
    """Off a terminal the training's progress is whole lines (a log keeps them readable), throttled, plus the end."""
    import io

    from vlm.train import _LineProgress

    out = io.StringIO()
    bar = _LineProgress(total=5, initial=1, every=3600, file=out)
    for _ in range(4):
        bar.update(1)
        bar.set_postfix(loss="0.500")
    assert out.getvalue() == ""  # throttled: nothing before the end
    bar.close()
    assert "\r" not in out.getvalue()
    assert out.getvalue().startswith("vlm train: step 5/5, loss 0.500 (")
    out = io.StringIO()
    bar = _LineProgress(total=3, initial=0, every=0, file=out)
    bar.update(1)
    bar.update(1)
    assert [ln.split(" (")[0] for ln in out.getvalue().splitlines()] == ["vlm train: step 1/3", "vlm train: step 2/3"]
