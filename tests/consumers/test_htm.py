"""Hierarchical Transformer Memory (consumers/htm): chunk selection, masking, gradients, the reduction to
full attention, the streaming memory, the tasks, the consumer run and the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.htm.model import MemoryAttention, MemoryTransformer, ModelConfig, _visible, build_model, num_parameters
from consumers.htm.tasks import CUE, QUERY, EmbeddingPool, decision_logits, episodes


def _pool(n: int = 120, d: int = 16, groups: int = 12, seed: int = 0) -> EmbeddingPool:
    rng = np.random.default_rng(seed)
    return EmbeddingPool(rng.normal(size=(n, d)).astype(np.float32), np.arange(n) % groups, "random")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A shard set in the sample contract: 96 random embeddings over 12 concepts."""
    from contracts.shards import ShardWriter, make_sample

    out = tmp_path_factory.mktemp("htm_shards")
    rng = np.random.default_rng(0)
    w = ShardWriter(out, "emb", shard_size=40)
    for i in range(96):
        concept = f"concept {i % 12}"
        w.write(make_sample(f"s{i:04d}", f"a {concept}", rng.normal(size=16),
                            {"source": "synthetic", "concepts": [concept]}))
    w.close()
    return out


def _memory_layer(chunk: int, k: int, heads: int = 1, d: int = 8, mode: str = "htm", seed: int = 0) -> MemoryAttention:
    torch.manual_seed(seed)
    return MemoryAttention(d, heads, chunk, k, mode).eval()  # eval: read k chunks (training reads every chunk)


def _read(layer: MemoryAttention, x: torch.Tensor, mem: torch.Tensor, mem_valid: torch.Tensor | None = None,
          visible: torch.Tensor | None = None) -> torch.Tensor:
    B, n, c, _ = mem.shape
    mem_valid = torch.ones(B, n, c, dtype=torch.bool) if mem_valid is None else mem_valid
    visible = torch.ones(B, x.shape[1], n, dtype=torch.bool) if visible is None else visible
    return layer.attend(x, *layer.keys_values(mem, mem_valid), mem_valid, visible)


def test_selection_picks_the_planted_chunk_for_each_episode_of_the_batch():
    B, n, c, d = 3, 12, 4, 8
    layer = _memory_layer(c, k=1, d=d)
    with torch.no_grad():  # keys = values = the memory itself, queries = the input
        for lin in (layer.q, layer.o):
            lin.weight.copy_(torch.eye(d))
        layer.kv.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)]))
    gen = torch.Generator().manual_seed(1)
    mem = 0.1 * torch.randn(B, n, c, d, generator=gen)
    planted = torch.tensor([7, 2, 11])
    direction = torch.zeros(d)
    direction[3] = 1.0
    for b in range(B):
        mem[b, planted[b]] += 2.0 * direction  # every step of the planted chunk points along the query
    x = 4.0 * direction.expand(B, 1, d)
    keys, values, summary = layer.keys_values(mem, torch.ones(B, n, c, dtype=torch.bool))
    q = layer.q(x).view(B, 1, 1, d).transpose(1, 2)
    w, idx = layer.select(q, summary, torch.ones(B, 1, n, dtype=torch.bool))
    assert idx[:, 0, 0, 0].tolist() == planted.tolist()
    assert torch.allclose(w, torch.ones_like(w))
    # the output is attention inside the planted chunk alone
    out = _read(layer, x, mem)[:, 0]
    for b in range(B):
        chunk = mem[b, planted[b]]
        expect = torch.softmax(chunk @ x[b, 0] / np.sqrt(d), 0) @ chunk
        assert torch.allclose(out[b], expect, atol=1e-5)
    # k=2: the planted chunk comes first, the second weighs less
    layer.k = 2
    w2, idx2 = layer.select(q, summary, torch.ones(B, 1, n, dtype=torch.bool))
    assert idx2[:, 0, 0, 0].tolist() == planted.tolist() and bool((w2[..., 0] > w2[..., 1]).all())
    # while training every chunk is scored (so every score learns), unless train_k says otherwise
    layer.train()
    assert layer.select(q, summary, torch.ones(B, 1, n, dtype=torch.bool))[1].shape[-1] == n
    layer.train_k = 3
    assert layer.select(q, summary, torch.ones(B, 1, n, dtype=torch.bool))[1].shape[-1] == 3


def test_chunk_score_noise_only_while_training_and_a_clear_winner_survives_it():
    B, H, T, n, dh = 2, 1, 64, 12, 8
    layer = MemoryAttention(dh, H, 4, 2, explore=1.0)
    gen = torch.Generator().manual_seed(0)
    q, summary = torch.randn(B, H, T, dh, generator=gen), 0.01 * torch.randn(B, H, n, dh, generator=gen)
    summary[:, :, 5] = 10.0 * q[:, :, 0]  # chunk 5 scores far above the rest for the first query
    visible = torch.ones(B, T, n, dtype=torch.bool)
    layer.eval()
    assert torch.equal(layer.select(q, summary, visible)[1], layer.select(q, summary, visible)[1])
    layer.train()
    layer.train_k = 2
    torch.manual_seed(0)
    a, b = layer.select(q, summary, visible)[1], layer.select(q, summary, visible)[1]
    assert not torch.equal(a, b)  # near-equal scores: the noise decides
    assert (a[:, :, 0] == 5).any(-1).all() and (b[:, :, 0] == 5).any(-1).all()  # a margin beyond the noise: kept


def test_layer_equals_full_attention_when_k_covers_every_chunk_of_one_step():
    """chunk=1: each summary is its step's key, so top-k over all chunks is softmax attention over every step."""
    B, T, n, d = 2, 5, 9, 16
    htm = _memory_layer(chunk=1, k=n, heads=4, d=d)
    full = _memory_layer(chunk=1, k=n, heads=4, d=d, mode="full")
    full.load_state_dict(htm.state_dict())
    x, mem = torch.randn(B, T, d), torch.randn(B, n, 1, d)
    visible = torch.rand(B, T, n) > 0.3
    visible[:, :, 0] = True
    a = _read(htm, x, mem, visible=visible)
    b = _read(full, x, mem, visible=visible)
    assert torch.allclose(a, b, atol=1e-5)
    # and against MultiheadAttention-style arithmetic written out: per head, softmax(q k / sqrt(dh)) v
    q = htm.q(x).view(B, T, 4, 4).transpose(1, 2)
    k, v = htm.kv(mem[:, :, 0]).view(B, n, 2, 4, 4).permute(2, 0, 3, 1, 4)
    att = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~visible[:, None], -1e9).softmax(-1) @ v
    assert torch.allclose(a, htm.o(att.transpose(1, 2).reshape(B, T, d)), atol=1e-5)
    # the reference's separate chunk-score projections, set to the attention's, give the same
    sep = MemoryAttention(d, 4, 1, n, relevance="separate").eval()
    sep.load_state_dict(htm.state_dict(), strict=False)
    with torch.no_grad():
        sep.rq.weight.copy_(htm.q.weight)
        sep.rk.weight.copy_(htm.kv.weight[:d])
    assert torch.allclose(_read(sep, x, mem, visible=visible), a, atol=1e-5)


@pytest.mark.parametrize("relevance", ["tied", "separate"])
def test_gather_and_dense_reads_equal_the_two_level_formula(relevance):
    B, T, n, c, d, H, k = 2, 3, 10, 4, 8, 2, 3
    torch.manual_seed(0)
    layer = MemoryAttention(d, H, c, k, relevance=relevance).eval()
    x, mem = torch.randn(B, T, d), torch.randn(B, n, c, d)
    mem_valid = torch.ones(B, n, c, dtype=torch.bool)
    mem_valid[1, 9, 2:] = False  # a part-filled chunk
    visible = torch.rand(B, T, n) > 0.2
    layer.impl = "gather"
    g = _read(layer, x, mem, mem_valid, visible)
    layer.impl = "dense"
    dense = _read(layer, x, mem, mem_valid, visible)
    assert torch.allclose(g, dense, atol=1e-5)
    # the formula, one query and head at a time
    keys, values, _ = layer.keys_values(mem, mem_valid)
    q = layer.q(x).view(B, T, H, d // H)
    rq = q if relevance == "tied" else layer.rq(x).view(B, T, H, d // H)
    out = torch.zeros(B, T, H, d // H)
    for b in range(B):
        for t in range(T):
            for h in range(H):
                if relevance == "tied":  # mean of the chunk's keys
                    summ = torch.stack([keys[b, h, j][mem_valid[b, j]].mean(0) for j in range(n)])
                else:  # the relevance key of the mean of its steps
                    summ = torch.stack([layer.rk(mem[b, j][mem_valid[b, j]].mean(0)).view(H, -1)[h] for j in range(n)])
                rel = summ @ rq[b, t, h] / np.sqrt(d // H)
                rel[~visible[b, t]] = -float("inf")
                top, idx = rel.topk(k)
                w = torch.softmax(top, 0)
                for wi, j in zip(w, idx.tolist()):
                    if not visible[b, t, j]:
                        continue
                    kk, vv = keys[b, h, j][mem_valid[b, j]], values[b, h, j][mem_valid[b, j]]
                    out[b, t, h] += wi * (torch.softmax(kk @ q[b, t, h] / np.sqrt(d // H), 0) @ vv)
    assert torch.allclose(g, layer.o(out.reshape(B, T, d)), atol=1e-5)


def test_masking_padded_chunks_and_steps_and_the_future():
    cfg = ModelConfig(emb_dim=16, d_model=16, heads=2, layers=2, chunk=4, k=2)
    torch.manual_seed(0)
    model = MemoryTransformer(cfg).eval()
    pool = _pool()
    batch = episodes("passive_visual_match", pool, 2, 38, np.random.default_rng(0))
    with torch.no_grad():
        full = model(batch)
        # episode 0 cut to 21 steps and padded with garbage: its first 21 outputs do not change
        padded = {k: v.clone() for k, v in batch.items()}
        padded["valid"] = torch.ones(2, 38, dtype=torch.bool)
        padded["valid"][0, 21:] = False
        padded["emb"][0, 21:] = 1e4
        out = model(padded)
        assert torch.allclose(out[0, :21], full[0, :21], atol=1e-4)
        assert torch.allclose(out[1], full[1], atol=1e-4)
        # a chunk wholly of padding is never visible; a part-padded one is
        valid = padded["valid"].clone()
        vis = _visible(2, 40, 10, 4, _pad_to(valid, 40).view(2, 10, 4))
        assert not vis[0, :, 6:].any() and vis[0, 39, 5] and vis[1, 39, :9].all() and not vis[:, :, 9].any()
        # causality: changing steps from 20 on leaves every earlier output alone
        later = {k: v.clone() for k, v in batch.items()}
        later["emb"][:, 20:] = torch.randn_like(later["emb"][:, 20:])
        assert torch.allclose(model(later)[:, :20], full[:, :20], atol=1e-5)
        assert not torch.allclose(model(later)[:, 20:], full[:, 20:], atol=1e-3)


def _pad_to(valid: torch.Tensor, T: int) -> torch.Tensor:
    return torch.nn.functional.pad(valid, (0, T - valid.shape[1]), value=False)


@pytest.mark.parametrize("kind", ["htm", "full", "lstm"])
def test_gradients_flow_to_every_parameter_and_through_the_memory(kind):
    cfg = ModelConfig(emb_dim=16, d_model=16, heads=2, layers=2, chunk=4, k=2)
    torch.manual_seed(0)
    model, _ = build_model(kind, cfg)
    model.inp.set_whitening(torch.from_numpy(_pool().emb))
    batch = episodes("one_shot_naming", _pool(), 4, 32, np.random.default_rng(0))
    batch["emb"].requires_grad_(True)
    logits = decision_logits(model(batch), batch)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["label"].flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if not name.startswith(("inp.pos", "inp.name")):  # unused rows aside, every tensor gets gradient
            assert p.grad.abs().sum() > 0, name
    # the decisions at the end reach back to the cue steps at the start: through the memory
    assert batch["emb"].grad[:, :3].abs().sum() > 0
    if kind != "lstm":
        assert model.blocks[0].memory.q.weight.grad.abs().sum() > 0  # the relevance scores learn too


def test_streaming_memory_commits_chunks_and_equals_the_parallel_pass():
    cfg = ModelConfig(emb_dim=16, d_model=16, heads=2, layers=2, chunk=4, k=2)
    for kind in ("htm", "full"):
        torch.manual_seed(0)
        model, _ = build_model(kind, cfg)
        model.eval()
        batch = episodes("passive_visual_match", _pool(), 3, 30, np.random.default_rng(1))
        with torch.no_grad():
            par = model(batch)
            states = model.start(3)
            steps = []
            for t in range(30):
                steps.append(model.step(batch, t, states))
                assert states[0].chunks == (t + 1) // 4 and states[0].filled == (t + 1) % 4
        assert torch.allclose(torch.stack(steps, 1), par, atol=1e-5), kind


def test_lstm_baseline_has_the_same_parameter_count():
    cfg = ModelConfig(emb_dim=32)
    htm, hi = build_model("htm", cfg)
    full, fi = build_model("full", cfg)
    lstm, li = build_model("lstm", cfg)
    assert hi["parameters"] == num_parameters(htm) and fi["parameters"] == num_parameters(full)
    assert hi["parameters"] == fi["parameters"]  # the same modules; only what the memory read differs
    sep, _ = build_model("htm", ModelConfig(emb_dim=32, relevance="separate"))
    assert num_parameters(sep) - hi["parameters"] == 2 * cfg.d_model**2 * cfg.layers
    assert abs(li["parameters"] - hi["parameters"]) / hi["parameters"] < 0.01


def test_episodes_follow_the_task_and_never_repeat_a_concept():
    pool = _pool()
    rng = np.random.default_rng(3)
    b = episodes("passive_visual_match", pool, 16, 40, rng, choices=3)
    assert (b["phase"][:, 0] == CUE).all() and (b["phase"][:, -3:] == QUERY).all()
    target = b["emb"][torch.arange(16), 37 + b["label"][:, 0]]
    assert torch.equal(target, b["emb"][:, 0])
    groups = {tuple(e.tolist()): g for e, g in zip(pool.emb, pool.group)}
    for i in range(16):
        cand = {groups[tuple(e.tolist())] for e in b["emb"][i, -3:]}
        assert len(cand) == 3 and not cand & {groups[tuple(e.tolist())] for e in b["emb"][i, 1:37]}
    n = episodes("one_shot_naming", pool, 8, 30, rng, choices=3, names=10)
    # every query shows a cue object; the label names that object's name among the episode's names
    out = torch.zeros(8, 30, 11)
    for i in range(8):
        for q in range(3):
            cue = [j for j in range(3) if torch.equal(n["emb"][i, j], n["emb"][i, 27 + q])][0]
            out[i, 27 + q, n["name"][i, cue]] = 1.0
    assert (decision_logits(out, n).argmax(-1) == n["label"]).all()
    with pytest.raises(ValueError, match="shorter than its cue and query"):
        episodes("one_shot_naming", pool, 2, 5, rng)


def test_consumer_through_run_consumer(shards, tmp_path):
    from contracts.registry import get, run_consumer

    assert get("htm").params.model_json_schema()["properties"]["task"]["enum"] == ["passive_visual_match",
                                                                                  "one_shot_naming"]
    params = {"task": "one_shot_naming", "data": str(shards), "length": 16, "eval_multiples": [1, 2], "chunk": 4,
              "k": 2, "d_model": 16, "heads": 2, "layers": 1, "steps": 6, "batch_size": 8, "eval_episodes": 8}
    res = run_consumer("htm", params, str(tmp_path / "run"))
    s = res["summary"]
    assert set(s["accuracy"]) == {"htm", "full", "lstm"} and set(s["accuracy"]["htm"]) == {"16", "32"}
    assert all(0.0 <= a <= 1.0 for m in s["accuracy"].values() for a in m.values())
    assert {"results.json", "accuracy.png", "htm/model.pt", "lstm/config.json"} <= set(res["files"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["models"]["full"]["steps"] == 6 and results["chance"] == pytest.approx(1 / 3)
    from contracts.reads import reads

    assert [(p, k) for p, k, _ in reads(get("htm").params.model_validate(params))] == [("data", "data")]


def test_cli_train_then_eval(shards, tmp_path):
    from synth2.cli import main

    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["htm", "train", "--data", str(shards), "--models", "htm,lstm", "--length", "16",
                                  "--eval-multiples", "1,3", "--chunk", "4", "--k", "2", "--d-model", "16",
                                  "--heads", "2", "--layers", "1", "--steps", "4", "--batch-size", "8",
                                  "--eval-episodes", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "passive_visual_match: trained at 16 steps" in r.output and (out / "htm" / "model.pt").exists()
    r = CliRunner().invoke(main, ["htm", "eval", "--model", str(out / "htm"), "--data", str(shards),
                                  "--lengths", "16,64", "--episodes", "8", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert [e["length"] for e in res["eval"]] == [16, 64] and res["kind"] == "htm"
    r = CliRunner().invoke(main, ["htm", "train", "--data", str(shards), "--heads", "3", "--out", str(out)])
    assert r.exit_code != 0 and "--heads" in r.output and "not a multiple" in r.output


def test_block_rejects_nothing_silently():
    with pytest.raises(ValueError, match="multiple of heads"):
        ModelConfig(d_model=10, heads=4)
    with pytest.raises(ValueError, match="multiple of heads"):
        MemoryAttention(10, 4, chunk=4, k=2)
    with pytest.raises(ValueError, match="unknown model kind"):
        build_model("gru", ModelConfig())
