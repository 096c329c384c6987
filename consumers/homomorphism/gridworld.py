"""Deterministic gridworlds: an agent walks to a goal; walls block. Small, exact and enumerable, so the
abstraction can be checked pair by pair and the optimal policy is known by breadth-first search."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

# up, right, down, left
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))

LAYOUTS = {
    # 11x11 Sutton-Precup-Singh four rooms; S start, G goal, # wall
    "four_rooms": """
#############
#     #    G#
#     #     #
#           #
#     #     #
#     #     #
## ####     #
#     ### ###
#     #     #
#     #     #
#S          #
#     #     #
#############""",
    "open": """
##########
#S       #
#        #
#        #
#        #
#        #
#        #
#        #
#       G#
##########""",
    "maze": """
#############
#S  #     # #
# # # ### # #
# #   #   # #
# ##### ### #
#     #     #
### # # ### #
#   #   #   #
# ##### # # #
#     # # # #
# ### # # # #
#   #   #  G#
#############""",
}


@dataclass
class GridWorld:
    """Reward `goal_reward` on entering the goal (which ends the episode), `step_reward` otherwise; bumping a
    wall leaves the agent in place. States are integers 0..n_states-1 over the free cells, row-major."""

    layout: str = "four_rooms"
    step_reward: float = 0.0
    goal_reward: float = 1.0
    goal: bool = True  # False: no goal cell (no reward, no termination), for checking the dynamics alone
    cells: list[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown gridworld layout {self.layout!r}; known: {', '.join(LAYOUTS)}")
        rows = [r for r in LAYOUTS[self.layout].strip("\n").splitlines()]
        self.cells = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c != "#"]
        self.index = {c: k for k, c in enumerate(self.cells)}
        self.start = next(self.index[(i, j)] for i, r in enumerate(rows) for j, c in enumerate(r) if c == "S")
        g = [self.index[(i, j)] for i, r in enumerate(rows) for j, c in enumerate(r) if c == "G"]
        self.goal_state = g[0] if (self.goal and g) else None
        self.state = self.start

    n_actions = len(MOVES)

    @property
    def n_states(self) -> int:
        return len(self.cells)

    def step_from(self, s: int, a: int) -> tuple[int, float, bool]:
        """The true dynamics: (next state, reward, done)."""
        i, j = self.cells[s]
        di, dj = MOVES[a]
        s2 = self.index.get((i + di, j + dj), s)
        if s2 == self.goal_state:
            return s2, self.goal_reward, True
        return s2, self.step_reward, False

    def reset(self) -> int:
        self.state = self.start
        return self.state

    def step(self, a: int) -> tuple[int, float, bool]:
        s2, r, done = self.step_from(self.state, a)
        self.state = s2
        return s2, r, done

    def pairs(self) -> list[tuple[int, int]]:
        """Every state–action pair an episode can take (the goal ends it, so none from the goal)."""
        return [(s, a) for s in range(self.n_states) if s != self.goal_state for a in range(self.n_actions)]

    def distances(self) -> np.ndarray:
        """Steps to the goal from every state under the optimal policy (breadth-first search backwards)."""
        if self.goal_state is None:
            raise ValueError("this gridworld has no goal")
        dist = np.full(self.n_states, np.inf)
        dist[self.goal_state] = 0
        preds: dict[int, list[int]] = {}
        for s, a in self.pairs():
            preds.setdefault(self.step_from(s, a)[0], []).append(s)
        todo = deque([self.goal_state])
        while todo:
            s2 = todo.popleft()
            for s in preds.get(s2, []):
                if dist[s] == np.inf:
                    dist[s] = dist[s2] + 1
                    todo.append(s)
        return dist

    def optimal_actions(self) -> dict[int, set[int]]:
        """For every non-goal state that reaches the goal, the actions on some shortest path."""
        d = self.distances()
        return {s: {a for a in range(self.n_actions) if d[self.step_from(s, a)[0]] == d[s] - 1}
                for s in range(self.n_states) if s != self.goal_state and np.isfinite(d[s])}
