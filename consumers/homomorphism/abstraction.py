"""The abstraction itself: a forward model of effects and the map from state–action pairs to one canonical
representative per predicted effect. Values are stored per representative, so pairs that lead to the same
effect share one value (an MDP homomorphism onto the effects: the abstract MDP has one action per effect).

The effect of a pair is what the model predicts it does — next state, reward, termination. In a
deterministic MDP two pairs with the same effect have the same Q-value exactly (Q(s, a) = r + γ V(s')), so
sharing loses nothing and a value learned through one pair is known to every pair with that effect."""

from __future__ import annotations

from collections.abc import Hashable, Iterable

Pair = tuple[Hashable, int]
Effect = tuple[Hashable, float, bool]


class TabularForwardModel:
    """A lookup table of observed transitions (deterministic MDPs): pair → (next state, reward, done)."""

    def __init__(self) -> None:
        self.table: dict[Pair, Effect] = {}

    def update(self, s: Hashable, a: int, r: float, s2: Hashable, done: bool) -> bool:
        """Record a transition; True when it is new (the pair's effect was unknown)."""
        new = (s, a) not in self.table
        self.table[(s, a)] = (s2, float(r), bool(done))
        return new

    def predict(self, s: Hashable, a: int) -> Effect | None:
        return self.table.get((s, a))

    def fit(self, transitions: Iterable[tuple[Hashable, int, float, Hashable, bool]]) -> TabularForwardModel:
        for t in transitions:
            self.update(*t)
        return self


class EffectAbstraction:
    """Pairs → canonical representatives of their predicted effect.

    The representative of an effect is the first pair the model was seen to map onto it (so the map is stable as
    the model learns). A pair the model cannot predict yet is its own representative: it keeps a value of its own
    until its effect is known, and then joins its effect's class (taking over the class value if it opened it)."""

    def __init__(self, model: TabularForwardModel | None = None) -> None:
        self.model = model or TabularForwardModel()
        self.rep_of_effect: dict[Effect, Pair] = {}

    def observe(self, s: Hashable, a: int, r: float, s2: Hashable, done: bool) -> None:
        self.model.update(s, a, r, s2, done)
        self.rep_of_effect.setdefault((s2, float(r), bool(done)), (s, a))

    def fit(self, transitions: Iterable[tuple[Hashable, int, float, Hashable, bool]]) -> EffectAbstraction:
        for t in transitions:
            self.observe(*t)
        return self

    def representative(self, s: Hashable, a: int) -> Pair:
        e = self.model.predict(s, a)
        return (s, a) if e is None else self.rep_of_effect[e]

    def classes(self, pairs: Iterable[Pair]) -> dict[Pair, list[Pair]]:
        """Representative → the pairs it stands for, over PAIRS."""
        out: dict[Pair, list[Pair]] = {}
        for p in pairs:
            out.setdefault(self.representative(*p), []).append(p)
        return out
