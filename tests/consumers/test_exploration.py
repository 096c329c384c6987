"""Semantic exploration (consumers/exploration): the environment (gymnasium's checker, seeded layouts and
episodes, views as world scenes), the novelty bonuses, the wrappers, a short training run, the consumer
and the CLI."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.exploration.env import COMPOSITIONS, FLOOR, FORWARD, LEFT, RoomsEnv, make_layout, view_scene
from consumers.exploration.intrinsic import RND, EpisodicNovelty, IntrinsicReward, VecIntrinsicReward


def test_env_passes_gymnasium_env_checker():
    from gymnasium.utils.env_checker import check_env

    for task in ("explore", "reach"):
        env = RoomsEnv(task=task, image_size=32)
        check_env(env, skip_render_check=True)
    from consumers.exploration.env import register_env

    register_env()
    check_env(gym.make("synth2/Rooms-v0", image_size=32).unwrapped, skip_render_check=True)


def _rollout(seed: int, steps: int = 60) -> tuple[list[np.ndarray], list[dict]]:
    env = RoomsEnv(layout_seed=None, image_size=32, max_steps=40)
    obs, info = env.reset(seed=seed)
    actions = np.random.default_rng(seed).integers(3, size=steps)
    views, infos = [obs], [info]
    for a in actions:
        obs, _, term, trunc, info = env.step(int(a))
        views.append(obs)
        infos.append(info)
        if term or trunc:
            obs, info = env.reset()
    return views, infos


def test_layout_and_episodes_are_determined_by_the_seed():
    a, b = make_layout(3), make_layout(3)
    assert np.array_equal(a.grid, b.grid) and a.objects == b.objects and a.target == b.target
    c = make_layout(4)
    assert not (np.array_equal(a.grid, c.grid) and a.objects == c.objects)
    v1, i1 = _rollout(7)
    v2, i2 = _rollout(7)
    assert all(np.array_equal(x, y) for x, y in zip(v1, v2, strict=True)) and i1 == i2
    v3, _ = _rollout(8)
    assert not all(np.array_equal(x, y) for x, y in zip(v1, v3, strict=True))


def test_layout_rooms_are_connected_and_objects_distinct():
    lay = make_layout(11, rooms=(3, 3), room_size=4, objects_per_room=2)
    assert len(set(lay.objects.values())) == len(lay.objects) == 18
    start = lay.room_cells(lay.start_room)[0]
    seen, frontier = {start}, [start]
    while frontier:  # flood fill over floor (objects block)
        r, c = frontier.pop()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            n = (r + dr, c + dc)
            if lay.grid[n] == FLOOR and n not in lay.objects and n not in seen:
                seen.add(n)
                frontier.append(n)
    assert {int(lay.room[x]) for x in seen} - {-1} == set(range(9))
    # Every object can be stood next to.
    assert all(any((r + dr, c + dc) in seen for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1))) for r, c in lay.objects)


def _facing(lay, cell):
    from consumers.exploration.env import approach

    return approach(lay, cell)


def test_view_is_the_world_scene_of_the_object_ahead_and_visiting_it_counts():
    env = RoomsEnv(layout_seed=5, image_size=32, task="reach")
    env.reset(seed=0)
    lay = env.layout
    cell = lay.target
    env.pos, env.dir = _facing(lay, cell)
    scene = view_scene(lay, env.pos, env.dir)
    colour, shape = COMPOSITIONS[lay.objects[cell]]
    assert scene.objects[0].colour == colour or scene.kind == "relation"
    if scene.kind == "single":
        assert scene.objects[0].size == "large" and scene.position.startswith("bottom")
    env.dir = (env.dir + 1) % 4  # turn away, then back: the step that faces it visits it
    _, reward, terminated, _, info = env.step(LEFT)
    assert info["visited"] == lay.objects[cell] and info["success"] and terminated and reward == 1.0
    assert f"{colour} {shape}" in info["mission"] and (f"{colour} {shape}" in info["caption"])


def _views_of(env, cell, n, rng):
    """N renders of the view facing CELL (the renderer jitters each)."""
    from consumers.exploration.env import draw_view, wall_distance

    pos, d = _facing(env.layout, cell)
    scene = view_scene(env.layout, pos, d)
    from generators.world.annotate import caption

    views = np.stack([draw_view(scene, wall_distance(env.layout, pos, d), rng, 32) for _ in range(n)])
    return views, [caption(scene, 0)] * n


@pytest.mark.parametrize("embedding", ["clip", "caption"])
@pytest.mark.parametrize("novelty", ["episodic", "rnd"])
def test_novelty_bonus_is_higher_for_an_unseen_object_than_a_revisited_one(tiny_world, embedding, novelty):
    from consumers.exploration.embeddings import make_embedding

    torch.manual_seed(0)
    world, _ = tiny_world
    embed = make_embedding(embedding, clip=str(world))
    env = RoomsEnv(layout_seed=2, image_size=32)
    env.reset(seed=0)
    cells = sorted(env.layout.objects)
    rng = np.random.default_rng(0)
    # Two objects of different colour and shape, each seen on its own.
    a = cells[0]
    ca = COMPOSITIONS[env.layout.objects[a]]
    b = next(c for c in cells[1:] if all(x != y for x, y in zip(COMPOSITIONS[env.layout.objects[c]], ca, strict=True))
             and view_scene(env.layout, *_facing(env.layout, c)).kind == "single")
    assert view_scene(env.layout, *_facing(env.layout, a)).kind == "single"
    seen_views, seen_caps = _views_of(env, a, 12, rng)
    emb_seen = embed(seen_views, seen_caps)
    revisit_v, revisit_c = _views_of(env, a, 6, rng)
    unseen_v, unseen_c = _views_of(env, b, 6, rng)
    if novelty == "episodic":
        nov = EpisodicNovelty(1)
        nov.bonus(emb_seen, [0] * len(emb_seen))
        score = lambda v, c: np.mean([nov.score(e, 0) for e in embed(v, c)])  # noqa: E731
    else:
        nov = RND(emb_seen.shape[1], seed=0)
        for _ in range(150):
            nov.bonus(emb_seen)
        score = lambda v, c: float(nov.error(embed(v, c)).mean().detach())  # noqa: E731
    revisited, unseen = score(revisit_v, revisit_c), score(unseen_v, unseen_c)
    assert unseen > 1.5 * revisited, (revisited, unseen)


def test_wrappers_add_the_bonus_and_restart_the_memory_each_episode():
    from consumers.exploration.embeddings import PixelEmbedding

    embed = PixelEmbedding()
    env = IntrinsicReward(RoomsEnv(image_size=32, max_steps=5), embed, EpisodicNovelty(1), beta=2.0)
    env.reset(seed=0)
    _, r, _, _, info = env.step(FORWARD)
    assert info["intrinsic"] > 0 and r == pytest.approx(2.0 * info["intrinsic"])
    venv = gym.vector.SyncVectorEnv([lambda: RoomsEnv(image_size=32, max_steps=5) for _ in range(2)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    nov = EpisodicNovelty(2)
    venv = VecIntrinsicReward(venv, embed, nov, beta=1.0)
    venv.reset(seed=[0, 1])
    for _ in range(5):
        _, r, term, trunc, infos = venv.step(np.array([FORWARD, LEFT]))
        assert r.shape == (2,) and np.allclose(r, infos["intrinsic"])
    assert trunc.all() and [len(m) for m in nov.memory] == [1, 1]  # restarted from the reset views
    with pytest.raises(ValueError, match="SAME_STEP"):
        VecIntrinsicReward(gym.vector.SyncVectorEnv([lambda: RoomsEnv(image_size=32)]), embed, nov)


def test_training_run_writes_results_and_the_policy_loads(tmp_path):
    from consumers.exploration.job import ExploreParams
    from consumers.exploration.train import evaluate, load_policy, run

    p = ExploreParams(embeddings=["pixels"], novelties=["episodic"], steps=256, n_envs=4, rollout=32, epochs=1,
                      episode_steps=32, image_size=32, rooms=2, seeds=[0])
    res = run(p, tmp_path)
    assert set(res["summary"]) == {"pixels+episodic", "random"}
    r = res["runs"][0]
    assert r["steps"] == 256 and r["episodes"] == 8 and r["distinct_rooms"] >= 1
    assert (tmp_path / "coverage.png").stat().st_size > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["random"]["objects_per_episode"]["n"] == 1
    from consumers.exploration.train import train_condition

    again = train_condition(p, None, None, 0)  # the random policy is seeded too
    first = json.loads((tmp_path / "random" / "seed0" / "metrics.json").read_text())
    assert again["coverage"] == first["coverage"] and sum(map(sum, first["coverage"])) > 256
    policy, info = load_policy(tmp_path / "pixels+episodic" / "seed0")
    ev = evaluate(policy, info["env"], None, episodes=2)
    assert ev["episodes"] == 2 and ev["layout"] == "new each episode" and ev["rooms_per_episode"] >= 1


def test_frame_stack_keeps_the_last_views_and_restarts_with_the_episode():
    from consumers.exploration.agent import FrameStack, Policy

    views = lambda v: np.full((2, 4, 4, 3), v, np.uint8)  # noqa: E731
    stack = FrameStack(2, 3, (4, 4, 3))
    first = stack.reset(views(1))
    assert first.shape == (2, 4, 4, 9) and (first == 1).all()
    stack.push(views(2), np.array([False, False]))
    out = stack.push(views(3), np.array([False, True]))
    assert out[0, 0, 0].tolist() == [1] * 3 + [2] * 3 + [3] * 3  # oldest first, newest in the last channels
    assert (out[1] == 3).all()  # env 1 ended: its stack restarts from the new episode's first view
    logits, value = Policy(3, 32, frames=3)(torch.from_numpy(np.zeros((2, 32, 32, 9), np.uint8)))
    assert logits.shape == (2, 3) and value.shape == (2,)


def test_a_frame_stacked_policy_trains_saves_and_evaluates(tmp_path):
    from consumers.exploration.job import ExploreParams
    from consumers.exploration.train import evaluate, load_policy, train_condition

    p = ExploreParams(embeddings=["pixels"], novelties=["rnd"], steps=128, n_envs=2, rollout=32, epochs=1,
                      episode_steps=32, image_size=32, rooms=2, seeds=[0], frames=2)
    train_condition(p, "pixels", "rnd", 0, tmp_path / "run")
    policy, info = load_policy(tmp_path / "run")
    assert policy.frames == 2 and info["frames"] == 2
    assert evaluate(policy, info["env"], 0, episodes=1)["episodes"] == 1


def test_params_are_checked():
    from pydantic import ValidationError

    from consumers.exploration.job import ExploreParams

    with pytest.raises(ValidationError, match="vlm"):
        ExploreParams(embeddings=["vlm"])
    with pytest.raises(ValidationError, match="repeat"):
        ExploreParams(seeds=[1, 1])
    with pytest.raises(ValidationError, match="48"):
        ExploreParams(rooms=5, objects_per_room=2)
    with pytest.raises(ValidationError):
        ExploreParams(unknown=1)


def test_consumer_is_registered_and_the_cli_runs(tmp_path):
    from contracts import registry
    from synth2.cli import main

    assert "explore" in registry.names()
    c = registry.get("explore")
    assert "embeddings" in c.info()["params_schema"]["properties"]
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["explore", "train", "--out", str(out), "--embeddings", "random_conv",
                                    "--novelties", "rnd", "--steps", "128", "--n-envs", "2", "--rollout", "32",
                                    "--epochs", "1", "--episode-steps", "32", "--image-size", "32", "--rooms", "2",
                                    "--no-random-policy", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "random_conv+rnd" in res.output and (out / "results.json").exists()
    res = CliRunner().invoke(main, ["explore", "eval", "--model", str(out / "random_conv+rnd" / "seed0"),
                                    "--episodes", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["condition"] == "random_conv+rnd"
    res = CliRunner().invoke(main, ["explore", "eval", "--model", str(tmp_path)])
    assert res.exit_code != 0 and "config.json" in res.output
    done = registry.run_consumer("explore", {"embeddings": [], "steps": 64, "n_envs": 2, "episode_steps": 16,
                                             "image_size": 32, "rooms": 2}, str(tmp_path / "consumer"))
    assert set(done["summary"]["objects_per_episode"]) == {"random"} and "coverage.png" in done["files"]


def test_vlm_embedding_is_the_vlm_mapper_over_its_encoder(tiny_world, tmp_path):
    from consumers.exploration.embeddings import make_embedding
    from vlm.model import SynthVLM, VLMConfig

    world, info = tiny_world
    cfg = VLMConfig(decoder=str(world / "lm"), embed_dim=info["models"]["clip"]["embed_dim"],
                    encoder=f"local-dir:{world / 'clip'}", freeze_decoder=True, mapper_hidden=32)
    torch.manual_seed(0)
    SynthVLM.create(cfg).save_pretrained(tmp_path / "vlm")
    embed = make_embedding("vlm", vlm=str(tmp_path / "vlm"))
    env = RoomsEnv(layout_seed=2, image_size=32)
    env.reset(seed=0)
    views, caps = _views_of(env, sorted(env.layout.objects)[0], 3, np.random.default_rng(0))
    e = embed(views, caps)
    assert e.shape[0] == 3 and torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    with torch.no_grad():
        clip_emb = embed.image(views, caps)
        want = torch.nn.functional.normalize(embed.vlm.prefix(clip_emb).mean(1), dim=-1)
    assert torch.allclose(e, want, atol=1e-6)


def test_pooled_seeds_pair_and_refuse_a_different_budget():
    """bench/exploration_pool.py pools seeds of equal budgets, pairs them by seed, and names a differing field."""
    from bench.exploration_pool import pool, summarise

    def res(seeds, vals, steps=100):
        runs = [{"condition": c, "seed": s, "objects_per_episode": v * (2.0 if c.startswith("clip") else 1.0),
                 "rooms_per_episode": 1.0, "distinct_objects": 3, "distinct_rooms": 1, "success_rate": 0.0,
                 "first_solved_step": None, "seconds": 1.0}
                for s, v in zip(seeds, vals) for c in ("clip+episodic", "pixels+episodic")]
        return {"budget": {"steps_per_run": steps, "seeds": seeds, "workers": 2}, "runs": runs}

    out = summarise(pool([res([0, 1], [1.0, 2.0]), res([2], [3.0])]))
    r = out["objects_per_episode_ratio"]["clip+episodic / pixels+episodic"]
    assert r["seeds"] == [0, 1, 2] and r["per_seed"] == [2.0, 2.0, 2.0]
    assert r["ratio_of_means"] == 2.0 and r["bootstrap_95"] == [2.0, 2.0]
    assert out["summary"]["pixels+episodic"]["objects_per_episode"]["mean"] == 2.0
    with pytest.raises(SystemExit, match="steps_per_run"):
        pool([res([0], [1.0]), res([1], [1.0], steps=200)])
    # a second CLIP's run renamed beside the first: both pair with the one pixel baseline
    from bench.exploration_pool import renamed

    other = renamed(res([0, 1], [1.0, 2.0]), "clip", "clip_view")
    assert {r["condition"] for r in other["runs"]} == {"clip_view+episodic", "pixels+episodic"}
    both = summarise(pool([res([0, 1], [1.0, 2.0]), other]))["objects_per_episode_ratio"]
    assert set(both) == {"clip+episodic / pixels+episodic", "clip_view+episodic / pixels+episodic"}


def test_bench_object_views_are_each_object_then_every_empty_wall_distance():
    """The exploration bench's diagnostic views: RENDERS views of each of the first N objects, then RENDERS
    empty views at every wall distance; seeded, so a second call draws the same pixels."""
    from bench.exploration_acceptance import object_views
    from consumers.exploration.env import VIEW_DEPTH

    views, scenes = object_views(0, renders=2, n_objects=3)
    assert views.shape == (2 * 3 + 2 * (VIEW_DEPTH + 1), 64, 64, 3) and views.dtype == np.uint8
    assert all(s is not None for s in scenes[:6]) and all(s is None for s in scenes[6:])
    assert scenes[0] == scenes[1] and scenes[1] != scenes[2]
    assert np.array_equal(object_views(0, renders=2, n_objects=3)[0], views)
