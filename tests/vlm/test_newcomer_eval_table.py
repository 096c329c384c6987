"""Issue #17 point 6: the VLM evaluation table gives sample counts, 95% intervals and a baseline row."""

from __future__ import annotations


def _result(acc: float, n: int) -> dict:
    attrs = {k: {"accuracy": acc, "n": n} for k in ("colour", "shape", "size", "count", "composition")}
    attrs["relation"] = {"accuracy": None, "n": 0}
    return {"samples": n, "decoding": {"greedy": {"bleu4": 0.5, "cider": 3.0, "world": {
        "attributes": attrs, "held_out_composition": {"accuracy": 0.25, "n": 48}}}}}


def test_eval_table_has_intervals_counts_and_a_baseline():
    from synth2.cli_vlm import eval_table

    base = _result(0.1, 960)["decoding"]["greedy"] | {"caption": "a red circle"}
    text = eval_table(_result(0.5, 960), base)
    rows = text.splitlines()
    assert rows[2].startswith("| greedy | 0.500 | 3.000 | 0.50 ± 0.03 |")  # 1.96 * sqrt(.25 / 960) = 0.032
    assert rows[2].endswith("| – | 0.50 ± 0.03 | 0.25 ± 0.12 |")  # relation: not scored; held-out: n = 48
    assert rows[3].startswith("| baseline: one caption for all | 0.500 | 3.000 | 0.10 ± 0.02 |")
    assert rows[4] == "| samples scored | 960 | 960 | 960 | 960 | 960 | 960 | 0 | 960 | 48 |"
    assert "baseline caption: 'a red circle'" in text


def test_kind_table_splits_composition_by_scene_kind():
    from synth2.cli_vlm import kind_table

    res = _result(0.5, 960)
    res["decoding"]["greedy"]["world"]["composition_by_kind"] = {
        "single": {"seen": {"accuracy": 0.9, "n": 100}, "held_out": {"accuracy": 0.5, "n": 4}},
        "relation": {"seen": {"accuracy": None, "n": 0}, "held_out": {"accuracy": 0.1, "n": 100}}}
    rows = kind_table(res).splitlines()
    assert rows[0] == "| composition by kind | relation seen | relation held-out | single seen | single held-out |"
    assert rows[2] == "| greedy | – | 0.10 ± 0.06 | 0.90 ± 0.06 | 0.50 ± 0.49 |"


def test_constant_baseline_scores_the_most_frequent_reference(tiny_world):
    from synth2.cli_vlm import constant_baseline
    from vlm.data import read_all

    world, _ = tiny_world
    test = str(world / "data" / "test")
    b = constant_baseline(test, 200)
    refs = [s["meta"].get("captions") or [s["txt"]] for s in read_all(test)[:200]]
    assert b["caption"] in {r[0] for r in refs}
    shape = b["world"]["attributes"]["shape"]
    assert shape["n"] > 0 and 0.0 <= shape["accuracy"] < 0.5  # one caption names one shape of six
    assert 0.0 <= b["cider"] < 3.0
