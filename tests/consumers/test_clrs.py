"""CLRS in PyTorch: the `clrs` job kind (shards, manifest, resume), the Dataset and collate, the
encode-process-decode model (each processor, padding, training), and the benchmark's scores."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.clrs.data import SamplerDataset, ShardDataset, collate
from consumers.clrs.evaluate import Scorer, evaluate, micro_f1
from consumers.clrs.model import EPD, PROCESSORS, ModelConfig, categories_of, permutation_target
from contracts.shards import Manifest, iter_samples
from pipeline.spec import SpecError, parse_spec

ALGOS = ["minimum", "bfs", "floyd_warshall"]


def clrs_spec(out, **clrs):
    base = {"algorithms": ALGOS, "train": {"count": 6, "nodes": [4, 7]}, "val": {"count": 2, "nodes": [5]},
            "test": {"count": 3, "nodes": [9]}, "seed": 3}
    return parse_spec({"version": 1, "name": "clrs-test", "kind": "clrs", "clrs": base | clrs,
                       "output": {"dir": str(out), "shard_size": 5, "name": "clrs"}})


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory):
    from pipeline.runner import run_job

    out = tmp_path_factory.mktemp("clrs_job")
    stats = run_job(clrs_spec(out))
    assert stats["samples"] == 3 * (6 + 2 + 3)
    return out


def test_spec_rejects_unknown_algorithm_naming_field_and_value(tmp_path):
    with pytest.raises(SpecError) as e:
        clrs_spec(tmp_path, algorithms=["bfs", "bogosort"])
    assert any(p.startswith("clrs.algorithms.1:") and "bogosort" in p for p in e.value.problems), e.value.problems
    with pytest.raises(SpecError) as e:
        clrs_spec(tmp_path, train={"count": 5, "nodes": [1]})
    assert any(p.startswith("clrs.train.nodes.0") for p in e.value.problems)
    with pytest.raises(SpecError):
        parse_spec({"version": 1, "name": "x", "kind": "clrs", "output": {"dir": str(tmp_path)}})  # no clrs section


def test_job_writes_trajectory_shards_and_manifest(job_dir):
    m = Manifest.load(job_dir)
    assert m.complete and m.samples == 33 and len(m.shards) == 7  # 33 samples, 5 per shard
    layout = m.extra["clrs"]["layout"]
    assert [(b["split"], b["algorithm"]) for b in layout][:3] == [("train", a) for a in ALGOS]
    assert m.extra["clrs"]["specs"]["bfs"]["pi"] == ["output", "node", "pointer"]
    samples = list(iter_samples(job_dir))
    assert len({s["__key__"] for s in samples}) == 33
    for i, s in enumerate(samples):
        meta = s["json"]
        assert meta["source"] == "synthetic" and meta["index"] == i
        n, spec = meta["n"], m.extra["clrs"]["specs"][meta["algorithm"]]
        assert {k.split(".")[1] for k in s if k.endswith(".npy")} == set(spec)
        for name, (stage, loc, _) in spec.items():
            arr = s[f"{stage}.{name}.npy"]
            lead = ((meta["length"],) if stage == "hint" else ()) + {"node": (n,), "edge": (n, n), "graph": ()}[loc]
            assert arr.shape[:len(lead)] == lead, (meta["algorithm"], name, arr.shape)
    by = {(s["json"]["split"], s["json"]["algorithm"]): s["json"]["n"] for s in samples}
    assert by[("test", "bfs")] == 9 and by[("val", "minimum")] == 5
    # the same trajectory comes straight from the sampler with the recorded seed
    from generators.clrs import sample

    s = samples[7]  # bfs, train
    t = sample(s["json"]["algorithm"], s["json"]["n"], s["json"]["seed"])
    np.testing.assert_array_equal(t.outputs["pi"], s["output.pi.npy"])


def test_job_resumes_after_a_crash_with_identical_shards(job_dir, tmp_path):
    from pipeline.runner import run_job

    out = tmp_path / "again"
    spec = clrs_spec(out)
    run_job(spec)
    full = Manifest.load(out)
    # a crash after three shards: the manifest lists three, a half-written one lies around
    m = Manifest.load(out)
    m.shards, m.complete = m.shards[:3], False
    m.save(out)
    for sh in full.shards[3:]:
        (out / sh.name).unlink()
    (out / "clrs-000003.tar.tmp").write_bytes(b"partial")
    stats = run_job(spec)
    assert stats["resumed_from"] == 15
    again = Manifest.load(out)
    assert [(s.name, s.sha256) for s in again.shards] == [(s.name, s.sha256) for s in full.shards]
    assert not (out / "clrs-000003.tar.tmp").exists()
    # and an output dir written from another directory of the same spec gives the same bytes
    assert [s.sha256 for s in Manifest.load(job_dir).shards] == [s.sha256 for s in full.shards]
    # a finished job reruns as a no-op
    assert run_job(spec)["resumed_from"] == 33


def test_dataset_and_collate_pad_nodes_and_hint_length(job_dir):
    ds = ShardDataset(job_dir, "bfs", "train")
    assert len(ds) == 6 and {d["n"] for d in ds.items} == {4, 7}
    items = [ds[0], ds[1]]  # 4 and 7 nodes
    b = collate(items, ds.spec)
    assert b.num_nodes == 7 and b.node_mask.sum(1).tolist() == [4, 7]
    t_max = max(it["length"] for it in items)
    assert b.hints["pi_h"].shape == (2, t_max, 7) and b.hints["pi_h"].dtype == torch.long
    assert b.inputs["adj"].shape == (2, 7, 7) and b.inputs["adj"][0, 4:].abs().sum() == 0
    assert b.lengths.tolist() == [it["length"] for it in items]
    short = int(np.argmin([it["length"] for it in items]))
    L = items[short]["length"]
    if L < t_max:  # padded steps repeat the last one
        assert torch.equal(b.hints["reach_h"][short, L:], b.hints["reach_h"][short, L - 1:L].expand(t_max - L, -1))
    fw = ShardDataset(job_dir, "floyd_warshall", "test")
    b = collate([fw[0], fw[1]], fw.spec)
    assert b.outputs["Pi"].shape == (2, 9, 9) and b.hints["D"].shape[2:] == (9, 9)
    with pytest.raises(KeyError):
        ShardDataset(job_dir, "dijkstra", "train")
    s = SamplerDataset("bfs", 3, [5, 6], seed=1)
    assert [s[i]["n"] for i in range(3)] == [5, 6, 5] and s[0] is s[0]


@pytest.mark.parametrize("processor", PROCESSORS)
def test_each_processor_forward_backward_and_padding_invariance(processor):
    torch.manual_seed(0)
    for algo in ("bfs", "floyd_warshall", "insertion_sort", "dag_shortest_paths"):
        ds = SamplerDataset(algo, 3, [5, 8, 6], seed=2)
        model = EPD(ds.spec, ModelConfig(processor=processor, hidden=16), categories_of(ds.spec, ds[0]))
        batch = collate([ds[0], ds[1], ds[2]], ds.spec)
        loss, parts = model.loss(batch)
        assert torch.isfinite(loss) and parts
        loss.backward()
        grads = [p.grad for p in model.processor.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
        # a trajectory padded inside a batch is predicted exactly as on its own
        model.eval()
        with torch.no_grad():
            alone = model(collate([ds[0]], ds.spec))[0]
            padded = model(batch)[0]
        for k, v in alone.items():
            a, p = (v[0], padded[k][0]) if isinstance(v, tuple) else (v, padded[k])
            n = ds[0]["n"]
            sl = (0,) + (slice(0, n),) * (a.dim() - 1)
            torch.testing.assert_close(p[sl], a[sl], atol=1e-4, rtol=1e-4, msg=f"{algo}/{processor}/{k}")


def test_training_lowers_the_loss_and_saves_a_loadable_model(tmp_path):
    from consumers.clrs.checkpoint import load_model, save_model
    from consumers.clrs.train import train

    torch.manual_seed(0)
    ds = SamplerDataset("minimum", 16, [5, 6], seed=0)
    model, hist = train("minimum", ds, ds, config=ModelConfig(processor="triplet_gmpnn", hidden=32), steps=30,
                        batch_size=8, lr=5e-3, eval_every=30)
    first, last = np.mean(hist["loss"][:3]), np.mean(hist["loss"][-3:])
    assert last < 0.6 * first, (first, last)
    save_model(model, tmp_path / "m", "minimum")
    again, meta = load_model(tmp_path / "m")
    assert meta["algorithm"] == "minimum"
    r1, r2 = evaluate(model, ds, batch_size=8), evaluate(again, ds, batch_size=8)
    assert r1["micro_f1"] == r2["micro_f1"] and r1["trajectories"] == 16


def test_size_buckets_give_one_node_count_per_batch_and_cover_every_trajectory():
    from consumers.clrs.train import SizeBuckets

    sizes = [4, 7, 4, 11, 7, 4, 11, 11, 4, 7, 16]
    sampler = SizeBuckets(sizes, 3, torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 2 + 1 + 1 + 1  # 4 fours, 3 sevens, 3 elevens, 1 sixteen
    assert all(len({sizes[i] for i in b}) == 1 and len(b) <= 3 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    epochs = [list(sampler) for _ in range(5)]
    assert any(e != batches for e in epochs)  # reshuffled each epoch


def test_training_with_size_buckets_runs_and_records_it():
    from consumers.clrs.train import train

    ds = SamplerDataset("minimum", 8, [4, 6], seed=0)
    _, hist = train("minimum", ds, None, config=ModelConfig(processor="mpnn", hidden=16), steps=3, batch_size=4,
                    batching="by_size")
    assert hist["steps"] == 3 and hist["batching"] == "by_size" and len(hist["loss"]) == 3
    with pytest.raises(ValueError, match="batching"):
        train("minimum", ds, None, steps=1, batching="sorted")


def test_scores_on_hand_made_predictions():
    spec = {"p": ("output", "node", "pointer"), "m": ("output", "node", "mask"), "o": ("output", "node", "mask_one"),
            "c": ("output", "node", "categorical"), "x": ("output", "graph", "scalar"), "h": ("hint", "node", "mask")}
    mask = torch.tensor([[True, True, True, False]])
    truth = {"p": torch.tensor([[0, 0, 1, 0]]), "m": torch.tensor([[1.0, 0.0, 1.0, 0.0]]), "o": torch.tensor([[0.0, 1, 0, 0]]),
             "c": torch.eye(3)[[0, 1, 2, 0]][None], "x": torch.tensor([2.0])}
    pred = {"p": torch.tensor([[0, 2, 1, 3]]),  # 2 of 3 real nodes right; the padded node is not counted
            "m": torch.tensor([[1.0, 1.0, 0.0, 1.0]]),  # tp 1, fp 1, fn 1 -> F1 0.5 (padded fp ignored)
            "o": torch.tensor([[0.0, 0.9, 0.1, 0.0]]), "c": torch.eye(3)[[0, 2, 2, 1]][None], "x": torch.tensor([1.5])}
    sc = Scorer(spec)
    sc.add(pred, truth, mask)
    s = sc.scores()
    assert set(s) == {"p", "m", "o", "c", "x"}  # hints are not scored
    assert s["p"]["score"] == pytest.approx(2 / 3) and s["m"]["score"] == pytest.approx(0.5)
    assert s["o"]["score"] == 1.0 and s["c"]["score"] == pytest.approx(2 / 3) and s["x"]["score"] == pytest.approx(-0.25)
    assert micro_f1(s) == pytest.approx((2 / 3 + 0.5 + 1 + 2 / 3 - 0.25) / 5)
    # pooled over batches (micro), not averaged per batch
    sc = Scorer({"m": ("output", "node", "mask")})
    sc.add({"m": torch.tensor([[1.0, 1.0]])}, {"m": torch.tensor([[1.0, 1.0]])}, torch.ones(1, 2, dtype=torch.bool))
    sc.add({"m": torch.tensor([[0.0, 0.0]])}, {"m": torch.tensor([[1.0, 1.0]])}, torch.ones(1, 2, dtype=torch.bool))
    assert sc.scores()["m"]["score"] == pytest.approx(2 / 3)  # p = 1, r = 0.5


def test_permutation_target_closes_the_order_into_a_cycle():
    # order 2 -> 0 -> 3 -> 1: pred[i] is i's predecessor, the first (2) points at itself
    pred = torch.tensor([[2, 3, 2, 0, 0]])
    mask = torch.tensor([[True, True, True, True, False]])
    perm, first = permutation_target(pred, mask)
    assert first.tolist() == [2] and perm[0, :4].tolist() == [2, 3, 1, 0]  # the first now points at the last (1)
    assert sorted(perm[0, :4].tolist()) == [0, 1, 2, 3]


def test_cli_train_and_eval(tmp_path, job_dir):
    from synth2.cli import main

    r = CliRunner().invoke(main, ["clrs", "train", "--algorithm", "bfs", "--data", str(job_dir), "--out", str(tmp_path / "m"),
                                  "--steps", "2", "--hidden", "16", "--batch-size", "4", "--eval-every", "1", "--threads", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "m" / "results.json").read_text())
    assert res["test_nodes"] == [9] and res["train_nodes"] == [4, 7] and res["steps"] == 2
    # one unit everywhere: the CLI prints the fraction the results hold
    assert f"bfs: micro-F1 {res['test_micro_f1']:.4f} on 3 trajectories" in r.output and "pi" in r.output
    r = CliRunner().invoke(main, ["clrs", "eval", "--model", str(tmp_path / "m"), "--count", "2", "--nodes", "12", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["trajectories"] == 2 and 0.0 <= out["micro_f1"] <= 1.0 and out["per_feature"]["pi"]["metric"] == "accuracy"
    r = CliRunner().invoke(main, ["clrs", "eval", "--model", str(tmp_path / "m"), "--count", "2", "--nodes", "12"])
    assert r.exit_code == 0 and f"micro-F1 {out['micro_f1']:.4f} on 2 trajectories" in r.output, r.output
    r = CliRunner().invoke(main, ["clrs", "train", "--algorithm", "bogosort", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "bogosort" in r.output


def test_cli_options_are_the_params_and_their_bounds():
    from consumers.clrs.params import ClrsParams
    from synth2.cli import main

    cmd = main.commands["clrs"].commands["train"]
    names = {o.name for o in cmd.params}
    assert set(ClrsParams.model_fields) <= names and {"out", "threads"} <= names
    bound = ClrsParams.model_fields["steps"].metadata  # one definition: the CLI refuses what the params refuse
    too_many = next(m.le for m in bound if hasattr(m, "le")) + 1
    r = CliRunner().invoke(main, ["clrs", "train", "--algorithm", "bfs", "--out", "x", "--steps", str(too_many)])
    assert r.exit_code != 0 and "--steps" in r.output
    with pytest.raises(ValueError):
        ClrsParams(algorithm="bfs", steps=too_many)


def test_clrs_is_a_registered_consumer(tmp_path):
    from contracts.registry import get, run_consumer

    c = get("clrs")
    with pytest.raises(ValueError, match="bogosort"):
        c.params.model_validate({"algorithm": "bogosort"})
    r = run_consumer("clrs", {"algorithm": "minimum", "steps": 2, "hidden": 16, "batch_size": 4, "train_count": 8,
                              "train_nodes": [5], "val_count": 4, "test_count": 3, "test_nodes": [7], "eval_every": 1},
                     str(tmp_path / "run"))
    assert {"config.json", "model.pt", "results.json"} <= set(r["files"])
    assert r["summary"]["test_nodes"] == [7] and 0.0 <= r["summary"]["test_micro_f1"] <= 1.0
    assert r["summary"]["test_trajectories"] == 3 and all(0.0 <= v <= 1.0 for v in r["summary"]["per_feature"].values())


def test_default_splits_are_the_reference_recipe_and_the_benchmark_test_split():
    from consumers.clrs.params import ClrsParams
    from consumers.clrs.train import datasets

    tr, va, te = datasets(ClrsParams(algorithm="minimum", train_count=10, val_count=3))
    assert (len(te), te.nodes, te.inputs, te.variant) == (2048, [64], "benchmark", "benchmark")  # 32 x 64 for minimum
    assert tr.inputs == va.inputs == "training" and tr.nodes == [4, 7, 11, 13, 16] and va.nodes == [16]
    assert te[0]["n"] == 64 and not np.allclose(tr[0]["inputs"]["pos"], np.arange(tr[0]["n"]) / tr[0]["n"])
    _, _, te = datasets(ClrsParams(algorithm="bfs"))
    assert len(te) == 32
    tr, _, _ = datasets(ClrsParams(algorithm="kmp_matcher", train_count=2))
    assert tr.nodes == [20]
    bst = SamplerDataset("optimal_bst", 2, [5])
    assert bst[0]["n"] == 6 and collate([bst[0], bst[1]], bst.spec).node_mask.sum().item() == 12


def test_masked_entries_are_neither_scored_nor_learned():
    # truth 1, 0, -1 (masked) predicted all 1: tp 1, fp 1 (the masked one is no false positive) -> F1 2/3
    sc = Scorer({"m": ("output", "node", "mask")})
    sc.add({"m": torch.tensor([[1.0, 1.0, 1.0]])}, {"m": torch.tensor([[1.0, 0.0, -1.0]])}, torch.ones(1, 3, dtype=torch.bool))
    assert sc.scores()["m"]["score"] == pytest.approx(2 / 3)
    # bridges' non-edges are -1: the loss is that of the real entries only, and trains
    ds = SamplerDataset("bridges", 2, [6], seed=0)
    assert (ds[0]["outputs"]["is_bridge"] == -1).any()
    model = EPD(ds.spec, ModelConfig(processor="mpnn", hidden=8), categories_of(ds.spec, ds[0]))
    batch = collate([ds[0], ds[1]], ds.spec)
    pred = torch.zeros(2, 6, 6)
    truth = batch.outputs["is_bridge"]
    valid = torch.ones(2, 6, 6, dtype=torch.bool)
    got = model._feature_loss("is_bridge", pred, truth, valid, batch.node_mask)
    keep = truth >= 0
    want = torch.nn.functional.binary_cross_entropy_with_logits(pred[keep], truth[keep])
    assert got.item() == pytest.approx(want.item())
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss)


def test_shards_of_algorithms_whose_size_is_not_their_node_count(tmp_path):
    from pipeline.runner import run_job

    spec = clrs_spec(tmp_path / "j", algorithms=["optimal_bst", "segments_intersect"], train={"count": 2, "nodes": [5]},
                     val={"count": 1, "nodes": [5]}, test={"count": 1, "nodes": [6]})
    run_job(spec)
    bst, seg = ShardDataset(tmp_path / "j", "optimal_bst", "train"), ShardDataset(tmp_path / "j", "segments_intersect", "train")
    assert [it["n"] for it in bst.items] == [6, 6] and [it["n"] for it in seg.items] == [4, 4]
    assert collate(bst.items, bst.spec).node_mask.shape == (2, 6)


def test_spec_variant_and_inputs_reach_the_samplers_and_leave_default_hashes_alone(tmp_path):
    from pipeline.clrs import iter_samples
    from pipeline.spec import spec_hash

    def spec(**kw):
        return clrs_spec(tmp_path / "o", algorithms=["lcs_length", "dfs"], train={"count": 4, "nodes": [8]},
                         val={"count": 0, "nodes": [8]}, test={"count": 0, "nodes": [8]}, **kw)

    base = spec()
    assert spec_hash(base) == spec_hash(spec(variant="benchmark", inputs="benchmark"))
    textbook, training = spec(variant="textbook"), spec(inputs="training")
    assert len({spec_hash(base), spec_hash(textbook), spec_hash(training)}) == 3
    rows = {name: list(iter_samples(s)) for name, s in (("base", base), ("textbook", textbook),
                                                         ("training", training))}
    assert all("variant" not in m and "inputs" not in m for _, _, m in rows["base"])
    assert all(m["variant"] == "textbook" for _, _, m in rows["textbook"])
    assert all(m["inputs"] == "training" for _, _, m in rows["training"])

    def arrays(row, algorithm):
        return [{k: v for k, v in s.items() if k.endswith(".npy")} for _, s, m in row if m["algorithm"] == algorithm]

    # lcs_length: the benchmark marks undecided cells -1 (masked), the textbook reading a blank class
    assert arrays(rows["base"], "lcs_length") != arrays(rows["textbook"], "lcs_length")
    # dfs: the training inputs draw each graph's edge probability, so the graphs differ
    assert arrays(rows["base"], "dfs") != arrays(rows["training"], "dfs")
    with pytest.raises(SpecError, match="variant"):
        spec(variant="book")
