"""Equivalent-effect abstraction: which pairs it merges, how much smaller the table is, that sharing values
loses nothing on a deterministic gridworld, the DQN learners, the consumer and the CLI."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.homomorphism.abstraction import EffectAbstraction
from consumers.homomorphism.gridworld import LAYOUTS, GridWorld
from consumers.homomorphism.tabular import TabularQ, q_learning, value_iteration


def fitted(env: GridWorld) -> EffectAbstraction:
    return EffectAbstraction().fit((s, a, *env.step_from(s, a)) for s, a in env.pairs())


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_merges_exactly_the_pairs_with_identical_next_states(layout):
    env = GridWorld(layout)
    abst = fitted(env)
    pairs = env.pairs()
    rep = {p: abst.representative(*p) for p in pairs}
    nxt = {p: env.step_from(*p)[0] for p in pairs}
    by_rep, by_next = {}, {}
    for p in pairs:
        by_rep.setdefault(rep[p], set()).add(p)
        by_next.setdefault(nxt[p], set()).add(p)
    assert sorted(map(sorted, by_rep.values())) == sorted(map(sorted, by_next.values()))
    assert all(rep[p] in by_rep[rep[p]] for p in pairs)  # a representative is one of its own pairs
    # walls make some pairs in-place moves: those merge with the moves into the same cell from a neighbour
    s = env.index[(1, 1)] if layout != "open" else env.index[(1, 2)]
    bumps = [(s, a) for a in range(env.n_actions) if env.step_from(s, a)[0] == s]
    assert bumps and len({rep[p] for p in bumps}) == 1


@pytest.mark.parametrize("layout", ["open", "four_rooms", "maze"])
def test_merged_table_is_A_times_smaller(layout):
    env = GridWorld(layout, goal=False)  # every cell is a next state of each action from some neighbour
    abst = fitted(env)
    classes = abst.classes(env.pairs())
    assert len(env.pairs()) == env.n_states * env.n_actions
    assert len(classes) == env.n_states
    assert len(env.pairs()) / len(classes) == env.n_actions == 4


def test_unknown_pairs_keep_their_own_value_until_the_model_predicts_them():
    env = GridWorld("open")
    abst = EffectAbstraction()
    s = env.index[(4, 4)]
    up, right = (s, 0), (env.index[(5, 3)], 1)  # up lands on (3, 4), right from (5, 3) on (5, 4)
    assert abst.representative(*up) == up
    abst.observe(*up, *env.step_from(*up))
    other = (env.index[(3, 3)], 1)  # right from (3, 3) also lands on (3, 4)
    assert env.step_from(*other)[0] == env.step_from(*up)[0]
    assert abst.representative(*other) == other  # not tried yet: the model does not know its effect
    abst.observe(*other, *env.step_from(*other))
    assert abst.representative(*other) == up
    assert abst.representative(*right) == right
    q = TabularQ(4, abst)
    q.update(*up, 5.0, alpha=1.0)
    assert q.q(env.index[(3, 3)])[1] == 5.0  # learnt through one pair, read through the other


@pytest.mark.parametrize("order", ["synchronous", "in_place"])
def test_value_iteration_reaches_the_same_optimal_values_with_a_smaller_table(order):
    env = GridWorld("four_rooms")
    base = value_iteration(env, abstraction=False, order=order)
    eea = value_iteration(env, abstraction=True, order=order)
    assert base["sweeps_to_optimal"] and eea["sweeps_to_optimal"]
    assert base["table_size"] == len(env.pairs()) and eea["table_size"] == env.n_states
    assert eea["backups_to_optimal"] < base["backups_to_optimal"] / 3


def test_value_iteration_values_are_identical_per_pair():
    """On a deterministic MDP the homomorphism is exact: every pair's optimal value is the same either way."""
    from consumers.homomorphism import tabular

    env = GridWorld("maze")
    tables = {}
    for ab in (False, True):
        q = TabularQ(4, fitted(env) if ab else None)
        keys = sorted({q.key(s, a) for s, a in env.pairs()})
        for _ in range(200):
            frozen = tabular._Frozen(q, dict(q.table))
            for k in keys:
                s2, r, done = env.step_from(*k)
                q.table[k] = r + (0 if done else 0.9 * frozen.q(s2).max())
        tables[ab] = np.array([q.q(s)[a] for s, a in env.pairs()])
    np.testing.assert_allclose(tables[True], tables[False], atol=1e-9)


def test_q_learning_finds_the_optimal_policy_with_and_without():
    env = GridWorld("open", step_reward=-1.0, goal_reward=0.0)
    runs = {ab: q_learning(env, abstraction=ab, episodes=1500, alpha=1.0, seed=0, patience=3) for ab in (False, True)}
    for r in runs.values():
        assert r["episodes_to_optimal"] is not None and r["history"][-1]["optimal"]
    assert runs[True]["table_size"] <= env.n_states < runs[False]["table_size"]


def _chain_cfg():
    from consumers.homomorphism.dqn import DQNConfig

    return DQNConfig(hidden=32, batch_size=32, learning_starts=100, eps_steps=300, target_every=50, gamma=0.8)


@pytest.mark.parametrize("abstraction", [False, True])
def test_dqn_learner_improves_on_a_trivial_env(abstraction):
    from consumers.homomorphism.dqn import DQNAgent, evaluate, train_dqn
    from consumers.homomorphism.envs import Chain

    torch.manual_seed(0)
    untrained = DQNAgent("vector", (4,), 4, _chain_cfg(), abstraction)
    before = np.mean(evaluate(untrained, Chain, 2, seed=0))
    r = train_dqn(Chain, abstraction=abstraction, cfg=_chain_cfg(), max_steps=500, seed=0, eval_every=250, eval_episodes=2)
    assert before < 1.0 and r["final_eval"] == 1.0, (before, r["curve"])
    if abstraction:  # actions 2 and 3 do the same: the learnt model predicts one effect, so one value
        agent = r["agent"]
        q = agent.q(agent.norm(torch.eye(4)[:3]))
        assert torch.allclose(q[:, 2], q[:, 3], atol=0.05), q


def test_image_forward_model_starts_from_a_copy_and_weighs_what_changes():
    from consumers.homomorphism.models import ForwardModel

    torch.manual_seed(0)
    m = ForwardModel("image", (4, 10, 10), 6, 32)
    s = (torch.rand(8, 4, 10, 10) < 0.05).float()
    nxt, _ = m.effect(s, torch.arange(8) % 6)
    assert torch.equal((nxt > 0.5).float(), s)  # untrained: "nothing changes"
    pred = (torch.zeros(8, 4, 10, 10), torch.zeros(8), torch.zeros(8))
    r, d = torch.zeros(8), torch.zeros(8)
    s2 = s.clone()
    assert torch.isclose(m.loss(pred, r, s2, d, s), m.loss(pred, r, s2, d))  # nothing changed: plain BCE
    s2[:, 0, 0, :2] = 1 - s2[:, 0, 0, :2]  # a paddle's two cells move
    extra = m.loss(pred, r, s2, d, s) - m.loss(pred, r, s2, d)  # at logit 0 every cell costs log 2
    changed = float((s2 != s).sum())
    assert abs(float(extra) - np.log(2) * (m.changed_weight - 1) * changed / s.numel()) < 1e-5


def test_train_dqn_takes_an_agent_class():
    """`agent_cls` swaps the update rule (bench/eea_cartpole_variants.py); the loop calls the subclass."""
    from consumers.homomorphism.dqn import DQNAgent, train_dqn
    from consumers.homomorphism.envs import Chain

    class Counting(DQNAgent):
        updates = 0

        def update(self, batch):
            Counting.updates += 1
            return super().update(batch)

    r = train_dqn(Chain, abstraction=False, cfg=_chain_cfg(), max_steps=200, seed=0, eval_every=200, eval_episodes=1,
                  agent_cls=Counting)
    assert isinstance(r["agent"], Counting) and Counting.updates == 101  # one update a step from step 100


def test_consumer_runs_through_run_consumer(tmp_path):
    from consumers.homomorphism.job import EEAEvalParams
    from contracts.reads import reads
    from contracts.registry import get, names, run_consumer

    assert "eea" in names() and get("eea").params.__name__ == "EEAParams"
    res = run_consumer("eea", {"env": "gridworld", "layout": "open", "seeds": 2, "episodes": 800}, str(tmp_path / "run"))
    s = res["summary"]
    assert {"results.json", "curves.png"} <= set(res["files"])
    assert s["table_size"]["with"]["mean"] <= 64 < s["table_size"]["without"]["mean"]
    assert s["episodes_to_optimal"]["with"]["reached"] == 2 and s["ratio_steps"] > 0
    assert {p["order"] for p in s["planning"]} == {"synchronous", "in_place"}
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert len(saved["runs"]) == 4 and saved["params"]["layout"] == "open"
    assert [(path, kind) for path, kind, _ in reads(EEAEvalParams(model="m"))] == [("model", "model")]


def test_cli_train_and_eval(tmp_path):
    from synth2.cli import main

    out = tmp_path / "chain"
    r = CliRunner().invoke(main, ["eea", "train", "--env", "chain", "--abstraction", "with", "--steps", "300",
                                  "--hidden", "16", "--learning-starts", "100", "--eps-steps", "200", "--eval-every", "150",
                                  "--eval-episodes", "1", "--gamma", "0.8", "--no-plots", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "results.json").read_text())["summary"]["env"] == "chain"
    r = CliRunner().invoke(main, ["eea", "eval", "--model", str(out / "models" / "with-seed0"), "--episodes", "2"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output)
    assert res["abstraction"] is True and len(res["returns"]) == 2
    r = CliRunner().invoke(main, ["eea", "train", "--env", "chain", "--seeds", "0", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--seeds" in r.output
    r = CliRunner().invoke(main, ["eea", "eval", "--model", str(tmp_path)])
    assert r.exit_code != 0 and "not a model directory" in r.output
