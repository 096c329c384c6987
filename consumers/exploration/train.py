"""Train PPO with an intrinsic reward (or a random policy) on the rooms environment; measure exploration.

One *condition* is an embedding × novelty pair (`clip+episodic`, `pixels+rnd`, ...) or `random`. Each runs
for the same number of environment steps. Measured on the run's own experience: per episode, the distinct
objects visited (stood next to, facing) and rooms entered; over the whole run, the distinct objects and
rooms, a visit count per cell (the coverage map), and the environment step at which the named target was
first visited (for `task=reach`: the step the task was first solved).

A run directory holds, per condition and seed, `<condition>/seed<N>/` (`policy.pt` + `config.json`, loaded
by `load_policy`; `metrics.json`), and `results.json` (every run, then a summary per condition) and
`coverage.png`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from consumers.exploration.agent import PPO, FrameStack, Policy, PPOConfig, RunningStd
from consumers.exploration.embeddings import make_embedding
from consumers.exploration.env import RoomsEnv
from consumers.exploration.intrinsic import VecIntrinsicReward, make_novelty

log = logging.getLogger("synth2.explore")
RANDOM = "random"


def condition_name(embedding: str | None, novelty: str | None) -> str:
    return RANDOM if embedding is None else f"{embedding}+{novelty}"


def env_kwargs(p) -> dict:
    return {"task": p.task, "rooms": (p.rooms, p.rooms), "room_size": p.room_size,
            "objects_per_room": p.objects_per_room, "max_steps": p.episode_steps, "image_size": p.image_size}


class Tracker:
    """Exploration figures from the per-step infos of N envs."""

    def __init__(self, n_envs: int, shape: tuple[int, int], target: int, last_fraction: float, total: int) -> None:
        self.objects = [set() for _ in range(n_envs)]
        self.rooms = [set() for _ in range(n_envs)]
        self.all_objects: dict[int, int] = {}  # composition -> first env step it was visited
        self.all_rooms: dict[int, int] = {}
        self.coverage = np.zeros(shape, np.int64)
        self.episodes: list[dict] = []
        self.target, self.first_solved = target, None
        self.tail_from = int(total * (1 - last_fraction))

    def start(self, i: int, info: dict) -> None:
        self.objects[i], self.rooms[i] = set(), set()
        self.see(i, info, None)

    def see(self, i: int, info: dict, step: int | None) -> None:
        self.coverage[info["row"], info["col"]] += 1
        if info["room"] >= 0:
            self.rooms[i].add(info["room"])
            self.all_rooms.setdefault(int(info["room"]), step or 0)
        if info["visited"] >= 0:
            self.objects[i].add(int(info["visited"]))
            self.all_objects.setdefault(int(info["visited"]), step or 0)
            if info["visited"] == self.target and self.first_solved is None:
                self.first_solved = step

    def end(self, i: int, step: int, success: bool, length: int) -> None:
        self.episodes.append({"end_step": step, "objects": len(self.objects[i]), "rooms": len(self.rooms[i]),
                              "success": bool(success), "length": int(length)})

    def summary(self) -> dict:
        tail = [e for e in self.episodes if e["end_step"] >= self.tail_from] or self.episodes[-1:]
        mean = lambda es, k: round(float(np.mean([e[k] for e in es])), 3) if es else None  # noqa: E731
        return {"episodes": len(self.episodes),
                "objects_per_episode": mean(tail, "objects"), "rooms_per_episode": mean(tail, "rooms"),
                "objects_per_episode_all": mean(self.episodes, "objects"),
                "rooms_per_episode_all": mean(self.episodes, "rooms"),
                "success_rate": mean(tail, "success"),
                "distinct_objects": len(self.all_objects), "distinct_rooms": len(self.all_rooms),
                "first_solved_step": self.first_solved}


def _info_at(infos: dict, i: int, final: bool) -> dict:
    src = infos["final_info"] if final else infos
    return {k: src[k][i] for k in ("row", "col", "room", "visited", "success", "t")}


def train_condition(p, embedding: str | None, novelty: str | None, seed: int, out: Path | None = None,
                    progress: Callable[[int], None] | None = None) -> dict:
    """One condition and seed for P.steps environment steps (P: consumers.exploration.job.ExploreParams)."""
    torch.manual_seed(seed)
    cfg = PPOConfig(n_envs=p.n_envs, n_steps=p.rollout, lr=p.lr, entropy=p.entropy, epochs=p.epochs)
    layout_seed = p.layout_seed if p.layout_seed is not None else seed
    venv = gym.vector.SyncVectorEnv([lambda: RoomsEnv(layout_seed=layout_seed, **env_kwargs(p))
                                     for _ in range(cfg.n_envs)], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    layout = venv.envs[0].unwrapped.layout
    name = condition_name(embedding, novelty)
    embed = None
    if embedding is not None:
        embed = make_embedding(embedding, clip=p.clip or p.world, vlm=p.vlm, seed=seed)
        probe = venv.envs[0].observation_space.sample()[None]
        dim = embed(probe, [""]).shape[1]
        venv = VecIntrinsicReward(venv, embed, make_novelty(novelty, cfg.n_envs, dim, seed=seed,
                                                             capacity=p.episode_steps + 1), beta=0.0)
    policy = Policy(venv.single_action_space.n, p.image_size, frames=p.frames)
    ppo = PPO(policy, cfg, seed)
    norm = RunningStd(cfg.n_envs, cfg.gamma)
    gen = torch.Generator().manual_seed(seed)
    act_rng = np.random.default_rng([seed, 3])  # the random policy's actions, seeded like everything else
    obs, infos = venv.reset(seed=[seed * 1000 + i for i in range(cfg.n_envs)])
    stack = FrameStack(cfg.n_envs, p.frames, obs.shape[1:])
    obs = stack.reset(obs)
    target = layout.objects[layout.target]
    track = Tracker(cfg.n_envs, layout.grid.shape, target, p.last_fraction, p.steps)
    for i in range(cfg.n_envs):
        track.start(i, _info_at(infos, i, False))
    per_update = cfg.n_envs * cfg.n_steps
    updates = max(1, p.steps // per_update)
    curve, t0, step = [], time.time(), 0
    for _ in range(updates):
        buf = {k: [] for k in ("obs", "actions", "logp", "values", "rewards", "dones", "intrinsic")}
        for _ in range(cfg.n_steps):
            if embedding is None:
                action = act_rng.integers(venv.single_action_space.n, size=cfg.n_envs)
                logp = value = torch.zeros(cfg.n_envs)
            else:
                action, logp, value = policy.act(obs, gen)
            nobs, ext, term, trunc, infos = venv.step(action)
            done = np.logical_or(term, trunc)
            intr = np.asarray(infos.get("intrinsic", np.zeros(cfg.n_envs)), np.float32)
            for i in range(cfg.n_envs):
                step += 1
                info = _info_at(infos, i, bool(done[i]))
                track.see(i, info, step)
                if done[i]:
                    track.end(i, step, bool(info["success"]), int(info["t"]))
                    track.start(i, _info_at(infos, i, False))
            if embedding is not None:
                norm.update(intr)  # the wrapper adds nothing (beta 0): the bonus is normalised and mixed here
                reward = ext + p.beta * intr / norm.std
                buf["obs"].append(torch.from_numpy(obs.copy()))
                buf["actions"].append(torch.from_numpy(action).long())
                buf["logp"].append(logp)
                buf["values"].append(value)
                buf["rewards"].append(torch.as_tensor(reward, dtype=torch.float32))
                buf["dones"].append(torch.as_tensor(done, dtype=torch.float32))
            buf["intrinsic"].append(intr)
            obs = stack.push(nobs, done)
        stats = {}
        if embedding is not None:
            with torch.no_grad():
                _, last_value = policy(torch.from_numpy(np.ascontiguousarray(obs)))
            batch = {k: torch.stack(v) for k, v in buf.items() if k != "intrinsic"}
            stats = ppo.update(batch, last_value)
        ended = [e for e in track.episodes if e["end_step"] > step - per_update]
        curve.append({"step": step, "intrinsic": round(float(np.mean(buf["intrinsic"])), 4),
                      "objects_per_episode": round(float(np.mean([e["objects"] for e in ended])), 3) if ended else None,
                      "distinct_objects": len(track.all_objects), "seconds": round(time.time() - t0, 1), **stats})
        if progress:
            progress(step)
    res = {"condition": name, "embedding": embedding, "novelty": novelty, "seed": seed, "layout_seed": layout_seed,
           "task": p.task, "steps": step, "seconds": round(time.time() - t0, 1), **track.summary(),
           "objects_in_layout": len(layout.objects), "rooms_in_layout": layout.n_rooms, "mission": layout.mission(),
           "curve": curve, "coverage": track.coverage.tolist(), "grid": layout.grid.tolist()}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if embedding is not None:
            torch.save(policy.state_dict(), out / "policy.pt")
        (out / "config.json").write_text(json.dumps({"condition": name, "embedding": embedding, "novelty": novelty,
                                                     "seed": seed, "layout_seed": layout_seed,
                                                     "env": {**env_kwargs(p), "rooms": [p.rooms, p.rooms]},
                                                     "frames": p.frames, "ppo": cfg.to_dict()}, indent=1))
        (out / "metrics.json").write_text(json.dumps(res))
    log.info("%s seed %d: %s objects/episode, %s distinct objects, first solved at %s (%.0f s)", name, seed,
             res["objects_per_episode"], res["distinct_objects"], res["first_solved_step"], res["seconds"])
    return res


def load_policy(d: str | Path) -> tuple[Policy | None, dict]:
    """A run folder written by `train_condition` → (policy, config); policy None for the random one."""
    d = Path(d)
    if not (d / "config.json").exists():
        raise FileNotFoundError(f"{d} has no config.json: not an exploration run folder (synth2 explore train writes "
                                f"OUT/<condition>/seed<N>)")
    info = json.loads((d / "config.json").read_text())
    if info["embedding"] is None:
        return None, info
    policy = Policy(3, info["env"]["image_size"], frames=info.get("frames", 1))
    policy.load_state_dict(torch.load(d / "policy.pt", map_location="cpu", weights_only=True))
    return policy.eval(), info


def evaluate(policy: Policy | None, env_cfg: dict, layout_seed: int | None, episodes: int = 16, seed: int = 1) -> dict:
    """Distinct objects and rooms per episode of the (sampling) policy; LAYOUT_SEED None: a new layout each
    episode (generalisation to unseen maps)."""
    kw = {**env_cfg, "rooms": tuple(env_cfg["rooms"])}
    env = RoomsEnv(layout_seed=layout_seed, new_layout_each_episode=layout_seed is None, **kw)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows = []
    stack = FrameStack(1, 1 if policy is None else policy.frames, env.observation_space.shape)
    for e in range(episodes):
        obs, info = env.reset(seed=seed * 10_000 + e)
        obs = stack.reset(obs[None])
        objects, rooms, success = set(), {info["room"]} - {-1}, False
        while True:
            a = int(rng.integers(3)) if policy is None else int(policy.act(obs, gen)[0][0])
            view, _, term, trunc, info = env.step(a)
            obs = stack.push(view[None], np.zeros(1, bool))
            if info["visited"] >= 0:
                objects.add(info["visited"])
            if info["room"] >= 0:
                rooms.add(info["room"])
            success |= info["success"]
            if term or trunc:
                break
        rows.append({"objects": len(objects), "rooms": len(rooms), "success": success})
    return {"episodes": episodes, "layout": "fixed" if layout_seed is not None else "new each episode",
            "objects_per_episode": round(float(np.mean([r["objects"] for r in rows])), 3),
            "rooms_per_episode": round(float(np.mean([r["rooms"] for r in rows])), 3),
            "success_rate": round(float(np.mean([r["success"] for r in rows])), 3)}


def conditions(p) -> list[tuple[str | None, str | None]]:
    out = [(e, n) for e in p.embeddings for n in p.novelties]
    return out + [(None, None)] if p.random_policy else out


def summarise(runs: list[dict]) -> dict:
    """Mean ± std over seeds per condition."""
    out: dict[str, dict] = {}
    keys = ("objects_per_episode", "rooms_per_episode", "distinct_objects", "distinct_rooms", "success_rate",
            "first_solved_step", "seconds")
    for name in dict.fromkeys(r["condition"] for r in runs):
        rs = [r for r in runs if r["condition"] == name]
        row: dict = {"seeds": [r["seed"] for r in rs]}
        for k in keys:
            vals = [r[k] for r in rs if r[k] is not None]
            row[k] = {"mean": round(float(np.mean(vals)), 3) if vals else None,
                      "std": round(float(np.std(vals)), 3) if vals else None, "n": len(vals),
                      "values": [r[k] for r in rs]}
        out[name] = row
    return out


def run(p, out: str | Path, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """P: consumers.exploration.job.ExploreParams. Every condition × seed; results.json and coverage.png."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if p.world is None and p.clip is None and any(e in ("clip", "caption") for e in p.embeddings):
        p = p.model_copy(update={"world": str(default_world(out))})
    conds = conditions(p)
    total = len(conds) * len(p.seeds) * p.steps
    runs = []
    for ci, (emb, nov) in enumerate(conds):
        for si, seed in enumerate(p.seeds):
            name = condition_name(emb, nov)
            base = (ci * len(p.seeds) + si) * p.steps

            def tick(step: int, base=base, name=name, seed=seed) -> None:
                if progress:
                    progress(base + step, total, f"{name} seed {seed}")

            runs.append(train_condition(p, emb, nov, seed, out / name / f"seed{seed}", tick))
    results = {"task": p.task, "steps": p.steps, "seeds": list(p.seeds), "params": p.model_dump(mode="json"),
               "summary": summarise(runs), "runs": [{k: v for k, v in r.items() if k not in ("coverage", "grid")}
                                                    for r in runs]}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    plot_coverage(runs, out / "coverage.png")
    return results


def default_world(out: Path) -> Path:
    """The embedded world at its tiny size (built once into OUT/world)."""
    from generators.world.build import build_world

    threads = torch.get_num_threads()
    build_world(out / "world", size="tiny", seed=0, image_size=64)
    torch.set_num_threads(threads)
    return out / "world"


def plot_coverage(runs: list[dict], path: str | Path, seed: int | None = None) -> None:
    """One panel per condition (the first seed's run unless SEED): log visit counts per cell over the map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seed = runs[0]["seed"] if seed is None else seed
    rs = [r for r in runs if r["seed"] == seed]
    cols = min(4, len(rs))
    rows = -(-len(rs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, r in zip(axes.flat, rs, strict=False):
        cov = np.asarray(r["coverage"], float)
        grid = np.asarray(r["grid"])
        img = np.ma.masked_where(grid == 1, np.log1p(cov))
        ax.imshow(grid == 1, cmap="Greys", vmin=0, vmax=1.6)
        ax.imshow(img, cmap="viridis", vmin=0, vmax=np.log1p(cov.max()))
        ax.set_title(f"{r['condition']}\n{r['objects_per_episode']} obj/ep, {r['distinct_objects']} distinct",
                     fontsize=8)
    fig.suptitle(f"coverage (log visits per cell), seed {seed}, {rs[0]['steps']} env steps", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
