"""The closed generation loop (vlm/loop.py, `synth2 loop`, the `loop` consumer) on the tiny world."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from vlm.loop import errors_to_weights, job_spec, run_loop
from vlm.loop_job import LoopParams, config


def test_errors_to_weights_follow_the_errors():
    items = ["a", "b", "c", "d"]
    per = {"a": {"n": 10, "correct": 10}, "b": {"n": 10, "correct": 0}, "c": {"n": 10, "correct": 7}}
    w = errors_to_weights(per, items, alpha=2.0, floor=0.1)
    assert sum(w.values()) == pytest.approx(1.0)
    assert w["b"] > w["d"] > w["c"] > w["a"]  # d unseen: error 0.5; c: 4/12
    assert min(w.values()) >= 0.1 / len(items)  # the floor: no concept starves
    flat = errors_to_weights(per, items, alpha=0.0, floor=0.0)
    assert list(flat.values()) == pytest.approx([0.25] * 4)


def test_job_spec_shares_captions_by_weight(tiny_world):
    from pipeline.prompts import concept_counts

    params = LoopParams(world=str(tiny_world[0]))
    base = config(params, "unused").spec
    items = base["concepts"]["items"]
    weights = {c: (0.5 if c == "red circle" else 0.5 / (len(items) - 1)) for c in items}
    spec = job_spec(base, weights, 960, 2, "t")
    counts = concept_counts(spec)
    assert sum(counts.values()) == 960 and counts["red circle"] == 480
    assert spec.scoring.balance.method == "none"
    uniform = job_spec(base, None, 960, 2, "t")
    assert set(concept_counts(uniform).values()) == {20}
    assert job_spec(base, None, 960, 3, "t").captions.sampling.seed != uniform.captions.sampling.seed


def test_params_need_a_world_or_every_location():
    with pytest.raises(ValueError, match="without world, set human, val, test, decoder, spec"):
        LoopParams()
    from contracts.registry import get

    assert get("loop").params is LoopParams


@pytest.fixture(scope="module")
def loop_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("loop")
    params = LoopParams(world=str(tiny_world[0]), rounds=2, pairs_per_round=60, steps=6, batch_size=16,
                        threads=1, seed=0)
    cfg = config(params, out / "errors", jobs_dir=out / "jobs")
    return out, cfg, run_loop(cfg)


def test_loop_rounds_record_weights_jobs_and_scores(loop_run):
    out, cfg, state = loop_run
    rounds = state["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert rounds[0]["weights"] is None  # round 1 is uniform: there are no errors yet
    assert rounds[1]["weights"] == rounds[0]["next_weights"]
    # The weights come from the validation split only, by the documented rule.
    assert rounds[0]["next_weights"] == errors_to_weights(rounds[0]["val"]["per_concept"], state["concepts"],
                                                          cfg.alpha, cfg.floor)
    assert rounds[0]["job_id"] != rounds[1]["job_id"]
    assert all(r["pairs"] == 60 for r in rounds) and rounds[1]["synthetic_pairs_total"] == 120
    assert len(rounds[1]["sources"]) == 3  # human + both rounds' synthetic subsets
    for r in rounds:
        assert r["test"]["samples"] == 192 and 0 <= r["test"]["held_out_composition"] <= 1
        assert r["test"]["cider"] >= 0 and "per_concept" not in r["test"]
        assert set(r["test"]["composition_by_kind"]) <= {"single", "count", "relation"}
        assert (out / "errors" / f"round-{r['round']}.png").stat().st_size > 0
    assert (out / "errors" / "loop.png").exists()
    assert json.loads((out / "errors" / "loop.json").read_text()) == state


def test_loop_resumes_and_the_uniform_arm_reuses_round_one(loop_run, tiny_world):
    out, cfg, state = loop_run
    again = run_loop(cfg)  # every round finished: nothing is retrained
    assert again == state
    from synth2.cli import main

    res = CliRunner().invoke(main, ["loop", "--world", str(tiny_world[0]), "--out", str(out / "uniform"),
                                    "--jobs-dir", str(out / "jobs"), "--strategy", "uniform", "--rounds", "1",
                                    "--pairs-per-round", "60", "--steps", "6", "--batch-size", "16", "--threads", "1"])
    assert res.exit_code == 0, res.output
    uni = json.loads((out / "uniform" / "loop.json").read_text())
    assert uni["rounds"][0]["job_id"] == state["rounds"][0]["job_id"]  # the same uniform job, not run twice
    assert "| 1 | 60 |" in res.output


def test_relation_share_follows_the_relation_scenes_misses():
    from vlm.loop import relation_share

    by_kind = {"single": {"seen": {"accuracy": 0.9, "n": 100}, "held_out": {"accuracy": 0.5, "n": 20}},
               "relation": {"seen": {"accuracy": 0.5, "n": 40}, "held_out": {"accuracy": None, "n": 0}}}
    # misses: single 10 + 10, relation 20: half of them, mixed with an even split at the floor's share
    assert relation_share(by_kind, floor=0.0) == pytest.approx(0.5)
    assert relation_share(by_kind, floor=0.2) == pytest.approx(0.8 * 0.5 + 0.1)
    assert relation_share({"single": by_kind["single"]}, floor=0.1) == pytest.approx(0.05)
    assert relation_share({}, floor=0.1) == 0.0


def test_a_kinds_loop_splits_its_job_between_one_and_two_concept_prompts(loop_run, tiny_world):
    from contracts.shards import iter_tar, shard_paths
    from vlm.loop import relation_share

    out, cfg, plain = loop_run
    assert "kinds" not in plain["settings"]  # loops from before the setting keep their fingerprint
    params = LoopParams(world=str(tiny_world[0]), rounds=2, pairs_per_round=60, steps=6, batch_size=16,
                        threads=1, seed=0, kinds=True)
    state = run_loop(config(params, out / "kinds", jobs_dir=out / "jobs"))
    r1, r2 = state["rounds"]
    assert r1["relation_share"] == 0.0 and r1["job_id"] == plain["rounds"][0]["job_id"]  # round 1: as before
    share = relation_share(r1["val"]["composition_by_kind_n"], cfg.floor)
    assert r1["next_relation_share"] == share == r2["relation_share"] and 0 < share < 1
    n_rel = round(60 * share)
    assert [p["pairs"] for p in r2["parts"]] == [60 - n_rel, n_rel] and r2["pairs"] == 60
    assert r2["synthetic_pairs_total"] == 120 and len(r2["sources"]) == 4  # human, round 1, round 2's two parts
    assert r2["parts"][1]["dir"] == "round-2/synthetic-relation"  # relative to the loop's folder: it can move
    rel = [s for p in shard_paths(out / "kinds" / r2["parts"][1]["dir"]) for s in iter_tar(p)]
    assert len(rel) == n_rel and all(len(s["json"]["prompt_concepts"]) == 2 for s in rel)
    assert r2["weights"] == r1["next_weights"] and r2["parts"][1]["job_id"] != r2["parts"][0]["job_id"]


def test_loop_bench_tables_give_held_out_by_kind(tmp_path):
    """bench/loop_experiment.py's table.md: the ratio per round, then each kind's held-out accuracy, loop and
    uniform, as mean ± sd over seeds (a kind no seed scored shows '-')."""
    from bench.loop_experiment import write_tables

    def test(h, single, rel):
        return {"held_out_composition": h, "cider": 1.0, "composition_by_kind": {
            "single": {"seen": 0.9, "held_out": single}, "relation": {"seen": 0.3, "held_out": rel}}}

    runs = {"errors-s0": {"rounds": [{"test": test(0.5, 0.8, 0.1)}, {"test": test(0.6, 0.7, 0.3)}]},
            "errors-s1": {"rounds": [{"test": test(0.5, 0.8, 0.1)}, {"test": test(0.6, 0.9, 0.5)}]},
            "uniform-s0": {"rounds": [{"test": test(0.5, 0.8, 0.1)}, {"test": test(0.5, 0.8, 0.2)}]},
            "uniform-s1": {"rounds": [{"test": test(0.5, 0.8, 0.1)}, {"test": test(0.5, 0.8, 0.2)}]}}
    table = {f"{a}-r{r}": {"held_out_composition": [h, 0.0], "cider": [1.0, 0.0]}
             for a, hs in (("errors", (0.5, 0.6)), ("uniform", (0.5, 0.5))) for r, h in enumerate(hs, 1)}
    text = write_tables({"table": table, "runs": runs, "settings": {"rounds": 2, "seeds": [0, 1]}}, tmp_path)
    assert (tmp_path / "table.md").read_text() == text and (tmp_path / "loop_experiment.png").exists()
    lines = text.splitlines()
    assert lines[3].startswith("| 2 | 0.600 ± 0.000 | 0.500 ± 0.000 | 1.20 |")
    assert lines[-1] == "| 2 | 0.800 ± 0.141 | 0.800 ± 0.000 | - | - | 0.400 ± 0.141 | 0.200 ± 0.000 |"
