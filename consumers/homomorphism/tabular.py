"""Tabular agents on a gridworld, each with and without the abstraction and otherwise identical:
Q-learning (episodes and environment steps until the greedy policy is optimal) and value iteration on a
model (sweeps and backups until the greedy policy is optimal everywhere)."""

from __future__ import annotations

import numpy as np

from consumers.homomorphism.abstraction import EffectAbstraction
from consumers.homomorphism.gridworld import GridWorld


class TabularQ:
    """Q-values in a table keyed by pair, or — with the abstraction — by the pair's effect representative."""

    def __init__(self, n_actions: int, abstraction: EffectAbstraction | None, init: float = 0.0) -> None:
        self.n_actions, self.abstraction, self.init = n_actions, abstraction, init
        self.table: dict = {}

    def key(self, s, a: int):
        return self.abstraction.representative(s, a) if self.abstraction else (s, a)

    def q(self, s) -> np.ndarray:
        return np.array([self.table.get(self.key(s, a), self.init) for a in range(self.n_actions)])

    def update(self, s, a: int, target: float, alpha: float) -> None:
        k = self.key(s, a)
        v = self.table.get(k, self.init)
        self.table[k] = v + alpha * (target - v)


def greedy_is_optimal(env: GridWorld, q: TabularQ, dist: np.ndarray) -> bool:
    """Does the greedy policy (ties to the lowest action) walk from the start to the goal in the fewest steps?"""
    s, steps = env.start, 0
    while s != env.goal_state and steps <= dist[env.start]:
        s = env.step_from(s, int(np.argmax(q.q(s))))[0]
        steps += 1
    return s == env.goal_state and steps == dist[env.start]


def q_learning(env: GridWorld, *, abstraction: bool, episodes: int = 500, alpha: float = 0.5, gamma: float = 0.95,
               epsilon: float = 0.1, max_steps: int = 2000, seed: int = 0, patience: int = 1) -> dict:
    """ε-greedy one-step Q-learning (random tie-breaking). With the abstraction, every transition also teaches the
    tabular forward model, and the update goes to the table entry of the pair's effect, which every pair with
    that effect reads. Stops after the greedy policy has been optimal for PATIENCE consecutive episodes."""
    rng = np.random.default_rng(seed)
    abst = EffectAbstraction() if abstraction else None
    q = TabularQ(env.n_actions, abst)
    dist = env.distances()
    steps_total, history, solved_at, streak = 0, [], None, 0
    for ep in range(1, episodes + 1):
        s, done, t = env.reset(), False, 0
        while not done and t < max_steps:
            qs = q.q(s)
            a = int(rng.integers(env.n_actions)) if rng.random() < epsilon else int(rng.choice(np.flatnonzero(qs == qs.max())))
            s2, r, done = env.step(a)
            if abst:
                abst.observe(s, a, r, s2, done)
            q.update(s, a, r + (0.0 if done else gamma * q.q(s2).max()), alpha)
            s, t = s2, t + 1
        steps_total += t
        optimal = greedy_is_optimal(env, q, dist)
        history.append({"episode": ep, "steps": t, "env_steps": steps_total, "optimal": optimal})
        streak = streak + 1 if optimal else 0
        if streak >= patience:
            solved_at = history[ep - patience]
            break
    return {"abstraction": abstraction, "episodes_to_optimal": solved_at["episode"] if solved_at else None,
            "steps_to_optimal": solved_at["env_steps"] if solved_at else None, "episodes_run": len(history),
            "table_size": len(q.table), "history": history}


def value_iteration(env: GridWorld, *, abstraction: bool, gamma: float = 0.95, order: str = "synchronous",
                    max_sweeps: int = 1000, tol: float = 1e-8) -> dict:
    """Value iteration on the tabular model of every pair (learnt by trying each pair once). Without the
    abstraction a sweep backs up every pair; with it, every effect class once. ORDER: `synchronous` (each sweep
    reads the previous sweep's values) or `in_place` (Gauss–Seidel: later backups read earlier ones)."""
    if order not in ("synchronous", "in_place"):
        raise ValueError(f"order must be 'synchronous' or 'in_place' (got {order!r})")
    pairs = env.pairs()
    abst = EffectAbstraction().fit((s, a, *env.step_from(s, a)) for s, a in pairs)
    q = TabularQ(env.n_actions, abst if abstraction else None)
    keys = sorted({q.key(s, a) for s, a in pairs})
    effect = {k: env.step_from(*k) for k in keys}  # a representative's effect is every member's effect
    opt, sweeps_to_optimal, backups, converged = env.optimal_actions(), None, 0, None
    for sweep in range(1, max_sweeps + 1):
        old = dict(q.table)
        delta = 0.0
        for k in keys:
            s2, r, done = effect[k]
            src = q if order == "in_place" else _Frozen(q, old)
            v = r + (0.0 if done else gamma * src.q(s2).max())
            delta = max(delta, abs(v - q.table.get(k, q.init)))
            q.table[k] = v
            backups += 1
        if sweeps_to_optimal is None and all(int(np.argmax(q.q(s))) in acts for s, acts in opt.items()):
            sweeps_to_optimal, backups_to_optimal = sweep, backups
        if delta < tol:
            converged = sweep
            break
    return {"abstraction": abstraction, "order": order, "table_size": len(keys),
            "sweeps_to_optimal": sweeps_to_optimal, "backups_to_optimal": backups_to_optimal if sweeps_to_optimal else None,
            "sweeps_to_converge": converged, "backups_per_sweep": len(keys)}


class _Frozen:
    """The previous sweep's values, read through the same keys."""

    def __init__(self, q: TabularQ, table: dict) -> None:
        self.q_, self.table = q, table

    def q(self, s) -> np.ndarray:
        return np.array([self.table.get(self.q_.key(s, a), self.q_.init) for a in range(self.q_.n_actions)])
