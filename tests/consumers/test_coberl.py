"""CoBERL (consumers/coberl): the RELIC loss, masking, the banded episode-aware attention, streaming = the
parallel unroll, n-step double-Q targets, the learner on a trivial task, the environments, the consumer run
and the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.coberl.learner import LearnerConfig, SequenceReplay, n_step_targets, rescale, train, unrescale
from consumers.coberl.model import Agent, AgentConfig, attention_mask, mask_positions, relic_loss


def test_contrastive_loss_is_least_when_predictions_equal_targets_and_rises_when_shuffled():
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(48, 32, generator=gen)
    same = relic_loss(t.clone(), t, tau=0.1)
    assert same["kl"].item() == pytest.approx(0.0, abs=1e-6)  # the same similarities seen from either side
    assert same["accuracy"].item() == 1.0
    shuffled = relic_loss(t[torch.randperm(48, generator=gen)], t, tau=0.1)
    assert shuffled["loss"].item() > same["loss"].item() + 5.0
    assert shuffled["accuracy"].item() < 0.2
    for scale in (0.3, 1.0, 3.0):  # any perturbation of the predictions costs more
        noisy = relic_loss(t + scale * torch.randn(48, 32, generator=gen), t, tau=0.1)
        assert same["loss"].item() < noisy["loss"].item() < shuffled["loss"].item() + 1.0
    # a gradient step from a shuffled start moves predictions towards their own targets
    p = t[torch.randperm(48, generator=gen)].clone().requires_grad_(True)
    relic_loss(p, t)["loss"].backward()
    stepped = relic_loss(p.detach() - 0.5 * p.grad, t)
    assert stepped["loss"].item() < relic_loss(p.detach(), t)["loss"].item()


@pytest.mark.parametrize("rate,steps", [(0.15, 20), (0.15, 27), (0.5, 10), (0.01, 12)])
def test_masking_covers_the_configured_share_of_every_sequence(rate, steps):
    m = mask_positions(64, steps, rate, torch.Generator().manual_seed(1))
    k = max(1, round(rate * steps))
    assert (m.sum(1) == k).all()
    assert abs(m.float().mean().item() - rate) <= 0.5 / steps + (1 / steps if k == 1 else 0)
    assert m.any(0).all()  # every position is masked in some sequence: no fixed pattern


def test_agent_masks_the_configured_share_in_its_contrastive_pass():
    cfg = AgentConfig(obs_shape=(2, 4, 4), n_actions=3, d_model=16, heads=2, lstm=16, window=3, mask_rate=0.25)
    agent = Agent(cfg)
    B, T = 6, 16
    obs = (torch.rand(B, T, 2, 4, 4) < 0.3).float()
    first, ep = torch.zeros(B, T, dtype=torch.bool), torch.zeros(B, T, dtype=torch.long)
    q, aux = agent.unroll(obs, first, ep, agent.initial_state(B), aux=True)
    assert q.shape == (B, T, 3) and (aux["mask"].sum(1) == 4).all()
    assert torch.isfinite(aux["loss"])
    aux["loss"].backward()
    assert agent.mask_token.grad.abs().sum() > 0 and agent.encoder.stem.weight.grad.abs().sum() > 0
    _, none = Agent(AgentConfig(**{**cfg.__dict__, "kind": "no_contrastive"})).unroll(
        obs, first, ep, agent.initial_state(B), aux=True)
    assert none == {}


def _batch(B=6, T=12, shape=(2, 4, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs = (torch.rand(B, T, *shape, generator=gen) < 0.3).float()
    return obs, torch.zeros(B, T, dtype=torch.bool), torch.zeros(B, T, dtype=torch.long)


def test_the_value_path_reads_unmasked_inputs_and_the_masked_pass_sees_both_sides():
    torch.manual_seed(0)
    cfg = AgentConfig(obs_shape=(2, 4, 4), n_actions=3, d_model=16, heads=2, lstm=16, window=3)
    agent = Agent(cfg)
    obs, first, ep = _batch()
    q_plain, _ = agent.unroll(obs, first, ep, agent.initial_state(6))
    q_aux, aux = agent.unroll(obs, first, ep, agent.initial_state(6), aux=True, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(q_plain, q_aux, atol=1e-6)  # masking never reaches the Q-values
    allowed, dist = attention_mask(ep[:1, :6], window=3, causal=False)
    assert allowed[0, 2].tolist() == [True, True, True, True, True, False]  # two back, itself, two ahead
    assert torch.equal(allowed[0], allowed[0].T)
    # the masked pass reads the future: changing a frame that no masked step has as its target, the last one,
    # changes the contrastive loss only when the masked steps may look ahead (window 12: they all see it)
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    for kind, changes in (("bidirectional", True), ("causal", False)):
        torch.manual_seed(0)
        a = Agent(AgentConfig(**{**cfg.__dict__, "window": 12, "aux_attention": kind}))
        _, x0 = a.unroll(obs, first, ep, a.initial_state(6), aux=True, generator=gen())
        later = obs.clone()
        free = ~x0["mask"][:, -1]
        later[free, -1] = 1.0 - later[free, -1]
        _, x1 = a.unroll(later, first, ep, a.initial_state(6), aux=True, generator=gen())
        assert torch.equal(x0["mask"], x1["mask"])
        assert (abs(x0["loss"].item() - x1["loss"].item()) > 1e-5) == changes, kind


def test_stop_gradient_targets_send_no_contrastive_gradient_through_the_targets():
    obs, first, ep = _batch()
    for targets, reaches in (("stop_gradient", False), ("gradient", True)):
        torch.manual_seed(0)  # window 1: a masked step sees only its mask token, so the encoder is reached via targets only
        agent = Agent(AgentConfig(obs_shape=(2, 4, 4), n_actions=3, d_model=16, heads=2, lstm=16, window=1,
                                  contrastive_targets=targets))
        _, aux = agent.unroll(obs, first, ep, agent.initial_state(6), aux=True)
        aux["loss"].backward()
        g = agent.encoder.stem.weight.grad
        assert (g is not None and g.abs().sum().item() > 0) == reaches, targets
        assert agent.mask_token.grad.abs().sum() > 0


def test_td_relative_scale_caps_the_contrastive_gradient_at_the_td_one_and_the_weight_ramps():
    from consumers.coberl.learner import Learner

    cfg = AgentConfig(obs_shape=(2, 4, 4), n_actions=3, d_model=16, heads=2, lstm=16, window=2)
    obs, first, ep = _batch(B=4, T=7)
    b = {"obs": obs, "first": first, "episode": ep, "h": torch.zeros(4, 16), "c": torch.zeros(4, 16),
         "act": torch.randint(0, 3, (4, 7)), "rew": torch.rand(4, 7), "done": torch.zeros(4, 7, dtype=torch.bool)}
    for scale, weight in (("fixed", 1.0), ("td_relative", 1.0), ("td_relative", 0.1)):
        torch.manual_seed(0)
        lc = LearnerConfig(batch=4, burn_in=2, unroll=3, n_step=2, contrastive_scale=scale, contrastive_weight=weight)
        out = Learner(cfg, lc).update(b)
        assert out["grad_aux_shared"] > 0 and out["grad_td_shared"] > 0
        if scale == "fixed":
            assert out["contrastive_scale"] == weight
        else:
            assert out["contrastive_scale"] * out["grad_aux_shared"] <= weight * out["grad_td_shared"] * (1 + 1e-5)
    lc = LearnerConfig(frames=1000, contrastive_weight=0.5, contrastive_warmup=0.4)
    assert [lc.contrastive_weight_at(f) for f in (0, 200, 400, 900)] == pytest.approx([0.0, 0.25, 0.5, 0.5])
    assert LearnerConfig(contrastive_weight=0.5).contrastive_weight_at(0) == 0.5
    with pytest.raises(ValueError, match="contrastive_scale"):
        LearnerConfig(contrastive_scale="auto")
    with pytest.raises(ValueError, match="aux_attention"):
        AgentConfig(aux_attention="full")


def test_attention_is_banded_causal_and_stays_inside_an_episode():
    ep = torch.tensor([[0, 0, 0, 0, 1, 1, 1]])
    allowed, dist = attention_mask(ep, window=3)
    a = allowed[0]
    assert a[3].tolist() == [False, True, True, True, False, False, False]  # the 3 steps ending at 3
    assert a[4].tolist() == [False, False, False, False, True, False, False]  # a new episode sees only itself
    assert a[6].tolist() == [False, False, False, False, True, True, True]
    assert not (a & (dist < 0)).any()


def test_acting_step_by_step_equals_the_parallel_unroll_across_episode_ends():
    torch.manual_seed(0)
    for kind in ("coberl", "lstm"):
        agent = Agent(AgentConfig(obs_shape=(3, 5, 5), n_actions=4, kind=kind, d_model=16, heads=2, lstm=16, window=4))
        T, N = 13, 3
        obs = (torch.rand(N, T, 3, 5, 5) < 0.3).float()
        first = torch.zeros(N, T, dtype=torch.bool)
        first[:, 0] = True
        first[0, 6] = first[2, 2] = first[2, 9] = True
        ep = first.long().cumsum(1)
        q_par, _ = agent.unroll(obs, first, ep, agent.initial_state(N))
        st = agent.start(N)
        q_seq = torch.stack([agent.step(obs[:, t], first[:, t], st) for t in range(T)], 1)
        assert torch.allclose(q_par, q_seq, atol=1e-5), kind


def test_n_step_double_q_targets_stop_at_the_end_of_an_episode():
    rew = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 1.0]])
    done = torch.tensor([[False, False, True, False, False, False]])
    q_on = torch.zeros(1, 6, 2)
    q_on[0, :, 1] = 1.0  # the online net picks action 1 everywhere
    q_tg = torch.zeros(1, 6, 2)
    q_tg[0, :, 0], q_tg[0, :, 1] = 100.0, 10.0  # ... and the target's value of action 1 is used (double Q)
    g = 0.5
    tgt = n_step_targets(q_on, q_tg, rew, done, start=0, length=3, n=2, gamma=g)
    # step 0 bootstraps from step 2 (its episode is still on); steps 1 and 2 reach its end at step 2
    assert tgt[0].tolist() == pytest.approx([1 + g * 0 + g**2 * 10, 0 + g * 2, 2.0])
    tgt = n_step_targets(q_on, q_tg, rew, done, start=3, length=2, n=2, gamma=g)
    assert tgt[0].tolist() == pytest.approx([0 + g * 0 + g**2 * 10, 0 + g * 1 + g**2 * 10])


def test_replay_sequences_are_consecutive_steps_of_one_stream_across_the_ring():
    rep = SequenceReplay(2, 10, (1, 1, 1), lstm=2)
    for t in range(23):  # wraps the ring twice
        rep.add(np.full((2, 1, 1, 1), 1.0), np.zeros(2, bool), np.zeros(2, int), np.full((2, 2), t), np.zeros((2, 2)),
                np.array([t, 100 + t]), np.zeros(2), np.zeros(2, bool))
    b = rep.sample(np.random.default_rng(0), 64, 4)
    a = b["act"].numpy()
    assert (np.diff(a, axis=1) == 1).all() and a.min() % 100 >= 13 and a.max() % 100 <= 22
    assert (b["h"][:, 0].numpy() == a[:, 0] % 100).all()  # the LSTM state stored with the sequence's first step
    assert (b["obs"] == 1.0).all()


def test_value_rescaling_and_its_inverse_undo_each_other_and_enter_the_n_step_target():
    x = torch.cat([torch.linspace(-1000, 1000, 2001, dtype=torch.float64), torch.tensor([0.0, 1e-4, -1e-4, 1e5],
                                                                                           dtype=torch.float64)])
    for eps in (1e-3, 1e-2):
        assert torch.allclose(unrescale(rescale(x, eps), eps), x, rtol=1e-9, atol=1e-7)
        assert torch.allclose(rescale(unrescale(x, eps), eps), x, rtol=1e-9, atol=1e-7)
    assert rescale(torch.tensor(0.0)).item() == 0.0 and (torch.diff(rescale(x.unique())) > 0).all()  # monotone: same argmax
    assert rescale(torch.tensor(99.0), 0.0).item() == pytest.approx(9.0)  # sqrt(100) - 1
    rew = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0]])
    done = torch.zeros(1, 5, dtype=torch.bool)
    q_on, q_tg = torch.zeros(1, 5, 2), torch.full((1, 5, 2), 3.0)
    tgt = n_step_targets(q_on, q_tg, rew, done, start=0, length=2, n=2, gamma=0.5, rescale_eps=1e-3)
    want = [rescale(torch.tensor(1 + 0.5 * 0 + 0.25 * unrescale(torch.tensor(3.0)).item())).item(),
            rescale(torch.tensor(0 + 0.5 * 2 + 0.25 * unrescale(torch.tensor(3.0)).item())).item()]
    assert tgt[0].tolist() == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="value_rescale"):
        LearnerConfig(value_rescale="log")


def _filled_replay(steps=30, envs=3, cap=40):
    rep = SequenceReplay(envs, cap, (1, 1, 1), lstm=2)
    for t in range(steps):
        rep.add(np.zeros((envs, 1, 1, 1)), np.zeros(envs, bool), np.zeros(envs, int), np.zeros((envs, 2)),
                np.zeros((envs, 2)), np.full(envs, t), np.zeros(envs), np.zeros(envs, bool))
    return rep


def test_prioritized_replay_samples_by_td_error_with_importance_weights():
    rep, T = _filled_replay(), 5
    n = 30 - T + 1  # valid starts per environment
    rng = np.random.default_rng(0)
    b = rep.sample(rng, 4, T, priority_exponent=0.9, importance=0.6)
    assert (b["weight"] == 1).all()  # all new sequences have the same (the largest) priority
    # R2D2's priority: 0.9 max + 0.1 mean of the sequence's |TD|; every other sequence gets a small one
    rep.priority[:] = 0.01
    td = np.array([[0.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    rep.update_priorities(np.array([1, 2]), np.array([7, 20]), td, eta=0.9)
    assert rep.priority[1, 7] == pytest.approx(0.9 * 4 + 0.1 * 1) and rep.priority[2, 20] == pytest.approx(1.0)
    assert rep.max_priority == pytest.approx(3.7)
    b = rep.sample(np.random.default_rng(1), 20_000, T, priority_exponent=0.9, importance=1.0)
    picked = list(zip(b["env"].tolist(), b["start"].tolist(), strict=True))
    p = np.full((3, n), 0.01 ** 0.9)
    p[1, 7], p[2, 20] = 3.7 ** 0.9, 1.0
    p /= p.sum()
    assert picked.count((1, 7)) / 20_000 == pytest.approx(p[1, 7], abs=0.015)
    assert picked.count((2, 20)) / 20_000 == pytest.approx(p[2, 20], abs=0.015)
    assert (b["act"][:, 0].numpy() == b["start"]).all()  # the sequence named is the one returned
    w = b["weight"].numpy()
    hi = b["start"] == 7
    assert w.max() == pytest.approx(1.0) and w[hi & (b["env"] == 1)].max() == pytest.approx(p[1, 7] ** -1 / p.min() ** -1)
    # the new step's sequence starts at the largest priority yet
    rep.add(np.zeros((3, 1, 1, 1)), np.zeros(3, bool), np.zeros(3, int), np.zeros((3, 2)), np.zeros((3, 2)),
            np.full(3, 30), np.zeros(3), np.zeros(3, bool))
    assert (rep.priority[:, 30] == pytest.approx(3.7))
    cfg = LearnerConfig(frames=1000, importance_start=0.6)
    assert [cfg.importance_at(f) for f in (0, 500, 1000, 2000)] == pytest.approx([0.6, 0.8, 1.0, 1.0])


def test_prioritized_sampling_is_seeded():
    rep = _filled_replay()
    rep.priority[:] = np.random.default_rng(5).random(rep.priority.shape)
    draw = lambda seed: rep.sample(np.random.default_rng(seed), 16, 5, priority_exponent=0.9, importance=0.6)  # noqa: E731
    a, b, c = draw(3), draw(3), draw(4)
    assert (a["env"] == b["env"]).all() and (a["start"] == b["start"]).all() and torch.equal(a["weight"], b["weight"])
    assert not ((a["env"] == c["env"]).all() and (a["start"] == c["start"]).all())
    with pytest.raises(ValueError, match="replay"):
        LearnerConfig(replay="rank")
    # R2D2's overlapping sequences: starts every STRIDE steps of the stream, across the ring's wrap too
    for steps in (30, 57):
        rep = _filled_replay(steps)
        b = rep.sample(np.random.default_rng(0), 500, 5, priority_exponent=0.9, stride=3)
        oldest = max(0, steps - 40)  # the ring holds 40 steps; a sequence of 5 starts at most 5 before the end
        assert set(b["act"][:, 0].tolist()) == {t for t in range(oldest, steps - 4) if t % 3 == 0}


@pytest.mark.parametrize("kind,replay,value_rescale", [("coberl", "uniform", "none"), ("lstm", "uniform", "none"),
                                                       ("coberl", "prioritized", "r2d2"), ("lstm", "prioritized", "r2d2")])
def test_learner_improves_on_a_trivial_environment(kind, replay, value_rescale):
    from consumers.coberl.envs import Corridor

    cfg = AgentConfig(channels=4, d_model=16, heads=2, lstm=16, window=2)
    lc = LearnerConfig(frames=1600, envs=8, batch=8, burn_in=2, unroll=6, n_step=2, gamma=0.9, lr=3e-3,
                       replay_ratio=2.0, learning_starts=200, target_every=20, eps_fraction=0.3, eval_episodes=4,
                       eval_eps=0.0, curve_points=8, replay=replay, value_rescale=value_rescale)
    r = train(Corridor, kind, cfg, lc, seed=0)
    rnd = train(Corridor, "random", cfg, lc, seed=0)
    assert r["final_eval"]["mean"] == 1.0  # greedy: walks right to the goal in every episode
    # ... within the time limit and faster than a random walk: more (shorter) episodes at the end
    late = [e for e in r["episodes"] if e["frames"] > 0.8 * lc.frames]
    late_rnd = [e for e in rnd["episodes"] if e["frames"] > 0.8 * lc.frames]
    assert len(late) > 1.3 * len(late_rnd)
    # near the optimum of 4 steps an episode (80 here; ε ends at 0.05: 58-80 measured over seeds and the options)
    assert len(late) >= 0.7 * (0.2 * lc.frames) / 4
    assert r["updates"] > 0
    if kind == "coberl":
        assert r["loss"]["contrastive_accuracy"] > 0.0


def test_minatar_through_the_homomorphism_wrapper_and_gymnasium():
    from consumers.coberl.envs import Gymnasium, MinAtar, make
    from consumers.homomorphism.envs import MinAtar as Base

    env = make("breakout")
    assert isinstance(env, MinAtar) and isinstance(env, Base) and env.n_actions == 3 and env.obs_shape == (4, 10, 10)
    o = env.reset(seed=0)
    o2, r, term, trunc = env.step(2)
    assert o.shape == o2.shape == (4, 10, 10) and set(np.unique(o)) <= {0.0, 1.0}
    g = Gymnasium("MinAtar/Breakout-v1")
    assert g.obs_shape == (4, 10, 10) and g.n_actions == 3
    assert g.reset(seed=0).shape == (4, 10, 10)
    with pytest.raises(ValueError, match="needs gym_id"):
        make("gymnasium")


def test_params_reject_inconsistent_settings():
    from pydantic import ValidationError

    from consumers.coberl.job import CoBERLParams

    with pytest.raises(ValidationError, match="burn_in 2 is shorter than window - 1"):
        CoBERLParams(window=8, burn_in=2)
    with pytest.raises(ValidationError, match="gym_id is needed"):
        CoBERLParams(env="gymnasium")
    with pytest.raises(ValidationError, match="must not repeat"):
        CoBERLParams(agents=["lstm", "lstm"])
    with pytest.raises(ValidationError):
        CoBERLParams(env="gymnasium", gym_id="evil.module:Env-v0")  # an id only: gymnasium imports modules named so


TINY = {"env": "corridor", "frames": 256, "envs": 4, "channels": 4, "d_model": 16, "heads": 2, "lstm": 16,
        "window": 2, "burn_in": 2, "unroll": 4, "n_step": 2, "batch": 4, "learning_starts": 100, "eval_episodes": 2}


def test_consumer_runs_through_run_consumer(tmp_path):
    from contracts.registry import get, run_consumer

    assert "coberl" in get("coberl").params.model_json_schema()["properties"]["agents"]["items"]["enum"]
    res = run_consumer("coberl", TINY, str(tmp_path / "run"))
    s = res["summary"]
    assert set(s["auc"]) == {"coberl", "no_contrastive", "lstm", "random"}
    assert {"results.json", "curves.png", "models/coberl-seed0/model.pt", "models/lstm-seed0/config.json"} <= set(res["files"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert all(r["frames"] == 256 for r in results["runs"]) and len(results["runs"][0]["curve"]) == 20
    assert results["summary"]["coberl"]["parameters"] > results["summary"]["lstm"]["parameters"]


def test_cli_train_then_eval(tmp_path):
    from synth2.cli import main

    out = tmp_path / "cli"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    r = CliRunner().invoke(main, ["coberl", "train", *args, "--agents", "coberl,lstm", "--no-plots", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "corridor, 256 frames per run" in r.output and (out / "models" / "coberl-seed0" / "model.pt").exists()
    r = CliRunner().invoke(main, ["coberl", "eval", "--model", str(out / "models" / "coberl-seed0"), "--episodes", "3",
                                  "--eps", "0"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["agent"] == "coberl" and len(res["returns"]) == 3
    r = CliRunner().invoke(main, ["coberl", "train", "--window", "9", "--out", str(out)])
    assert r.exit_code != 0 and "burn_in" in r.output
