"""Memory tasks built from embedding shards (any synth2 job's, the embedded world's by default).

- `passive_visual_match` (the paper's Passive Visual Match): a target embedding, a long phase of
  distractor embeddings, then `choices` candidate embeddings one per step; the model picks the step
  that shows the target.
- `one_shot_naming` (after the paper's one-shot object naming): `choices` objects, each shown once with
  a nonsense name drawn for this episode, distractors, then every object again (shuffled); at each the
  model names it among the episode's names.

An episode has `length` steps in all; distractors fill whatever the cue and query phases leave. Every
choice is among `choices` options, so chance is 1/choices. Objects of one episode are of distinct
concepts (the sample's `concepts`, else its caption), and distractors share no concept with them, so
the answer is never ambiguous.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Task = Literal["passive_visual_match", "one_shot_naming"]
TASKS: tuple[str, ...] = ("passive_visual_match", "one_shot_naming")
PHASES = ("blank", "cue", "distractor", "query")
CUE, DISTRACTOR, QUERY = 1, 2, 3
# display only: the model sees token ids
NONSENSE = ("dax", "blicket", "wug", "toma", "fep", "zav", "modi", "gazzer", "kiki", "bouba", "tupa", "lorp",
            "pilk", "sned", "vonk", "yadd", "quib", "mave", "norch", "tesk", "glim", "rasp", "wex", "zunt")


@dataclass
class EmbeddingPool:
    """Every sample's embedding [N, D] and the concept group it belongs to."""

    emb: np.ndarray
    group: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        order = np.argsort(self.group, kind="stable")
        self.emb, self.group = self.emb[order], self.group[order]
        _, self.starts, self.sizes = np.unique(self.group, return_index=True, return_counts=True)
        self.groups = len(self.starts)

    @classmethod
    def load(cls, url: str) -> EmbeddingPool:
        """A shard directory, `.tar` pattern or service job URL (vlm.data's sources)."""
        from vlm.data import iter_source

        embs, keys = [], []
        for s in iter_source(url):
            e = s["emb"]
            embs.append(e.mean(0) if e.ndim == 2 else e)  # a token grid counts as its mean
            concepts = s["meta"].get("concepts")
            keys.append(json.dumps(sorted(concepts)) if concepts else s["txt"])
        if not embs:
            raise ValueError(f"{url}: no samples")
        _, group = np.unique(np.array(keys), return_inverse=True)
        return cls(np.stack(embs).astype(np.float32), group.astype(np.int64), url)

    def check(self, choices: int) -> None:
        if self.groups < choices + 1:
            raise ValueError(f"{self.source}: {self.groups} concept groups; an episode with {choices} choices needs "
                             f"at least {choices + 1} (lower `choices`, or use shards with more concepts)")

    def _objects(self, rng: np.random.Generator, B: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """N objects of distinct groups per episode: (item indices [B, n], their groups [B, n])."""
        g = np.argsort(rng.random((B, self.groups)), axis=1)[:, :n]
        items = self.starts[g] + (rng.random((B, n)) * self.sizes[g]).astype(np.int64)
        return items, g

    def _distractors(self, rng: np.random.Generator, B: int, L: int, avoid: np.ndarray) -> np.ndarray:
        """[B, L] items whose group is none of AVOID [B, n] (redrawn until so)."""
        items = rng.integers(0, len(self.emb), (B, L))
        while True:
            bad = (self.group[items][:, :, None] == avoid[:, None, :]).any(-1)
            if not bad.any():
                return items
            items[bad] = rng.integers(0, len(self.emb), int(bad.sum()))


def episodes(task: str, pool: EmbeddingPool, batch: int, length: int, rng: np.random.Generator, *,
             choices: int = 3, names: int = 16) -> dict[str, torch.Tensor]:
    """A batch of episodes: inputs emb/has_emb/name/phase [B, T(, D)] and decisions: for every decision q
    and option c, the step `pos` [B, Q, C] and output column `col` [B, Q, C] holding its logit; `label` [B, Q]."""
    pool.check(choices)
    B, C, T = batch, choices, length
    cue = 1 if task == "passive_visual_match" else C
    L = T - cue - C
    if L < 0:
        raise ValueError(f"episode length {T} is shorter than its cue and query phases ({cue + C} steps)")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    objects, groups = pool._objects(rng, B, C)
    items = np.zeros((B, T), np.int64)
    name = np.zeros((B, T), np.int64)
    phase = np.full((B, T), DISTRACTOR, np.int64)
    phase[:, :cue], phase[:, T - C:] = CUE, QUERY
    items[:, cue:T - C] = pool._distractors(rng, B, L, groups)
    bi = np.arange(B)[:, None]
    if task == "passive_visual_match":
        slot = rng.integers(0, C, B)
        items[:, 0] = objects[np.arange(B), slot]
        items[:, T - C:] = objects
        pos = np.broadcast_to(np.arange(T - C, T), (B, 1, C))
        col = np.zeros((B, 1, C), np.int64)  # the match score
        label = slot[:, None]
    else:
        if names < C:
            raise ValueError(f"one_shot_naming needs at least as many names ({names}) as objects ({C})")
        episode_names = 1 + np.argsort(rng.random((B, names)), axis=1)[:, :C]  # token ids, 0 is "no name"
        items[:, :C], name[:, :C] = objects, episode_names
        perm = np.argsort(rng.random((B, C)), axis=1)
        items[:, T - C:] = objects[bi, perm]
        pos = np.broadcast_to((T - C + np.arange(C))[None, :, None], (B, C, C))
        col = np.broadcast_to(episode_names[:, None, :], (B, C, C))
        label = perm
    return {"emb": torch.from_numpy(pool.emb[items]), "has_emb": torch.ones(B, T, dtype=torch.bool),
            "name": torch.from_numpy(name), "phase": torch.from_numpy(phase),
            "pos": torch.from_numpy(np.ascontiguousarray(pos)), "col": torch.from_numpy(np.ascontiguousarray(col)),
            "label": torch.from_numpy(np.ascontiguousarray(label))}


def decision_logits(out: torch.Tensor, batch: dict) -> torch.Tensor:
    """Model outputs [B, T, 1 + names] → the logits of every decision's options [B, Q, C]."""
    bi = torch.arange(out.shape[0], device=out.device)[:, None, None]
    return out[bi, batch["pos"], batch["col"]]
