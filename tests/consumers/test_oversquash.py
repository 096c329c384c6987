"""Representational collapse / over-squashing analysis (consumers/oversquash) on tiny GPT-2 models built
here (saved with save_pretrained, loaded back with from_pretrained) and on the synthetic attention layer."""

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.oversquash.analysis import Sequences, collapse_curve, load, sensitivity, with_sep
from consumers.oversquash.synthetic import ENCODINGS, synthetic_check
from consumers.oversquash.tiny import build_tiny_gpt2

NS = [1, 4, 16, 64, 160, 300, 500]
NS_SEP = [1, 4, 16, 64, 160, 300, 380]  # with a comma every 3 digits, n = 380 is 507 tokens of the 512


@pytest.fixture(scope="module")
def nope_gpt2(tmp_path_factory):
    """Tiny random GPT-2 with the position table zeroed (no positional encoding), 512 positions."""
    path = tmp_path_factory.mktemp("gpt2_nope")
    build_tiny_gpt2(path, n_layer=2, n_embd=32, n_head=2, n_positions=512, nope=True, seed=0)
    model, tok = load(str(path))
    return path, model, tok


@pytest.fixture(scope="module")
def nope_curves(nope_gpt2):
    _, model, tok = nope_gpt2
    seqs = Sequences(tok)
    models = {"float32": model, "bfloat16": copy.deepcopy(model).to(torch.bfloat16)}
    return collapse_curve(models, seqs, "ones", None, NS), collapse_curve(models, seqs, "ones", 3, NS_SEP)


@pytest.fixture(scope="module")
def learned_gpt2(tmp_path_factory):
    """Tiny random GPT-2 with its (random) learned absolute position table."""
    path = tmp_path_factory.mktemp("gpt2_learned")
    build_tiny_gpt2(path, n_layer=2, n_embd=32, n_head=2, n_positions=128, seed=0)
    return path


def test_sequences_are_token_level(nope_gpt2):
    _, _, tok = nope_gpt2
    seqs = Sequences(tok)
    ids, head = seqs.build("ones", 7, 3)
    assert ids[:head] == [tok.bos_token_id]
    assert ids[head:] == [seqs.one] * 3 + [seqs.sep] + [seqs.one] * 3 + [seqs.sep] + [seqs.one]
    assert with_sep([1, 1, 1], 3, 9) == [1, 1, 1]
    a, _ = seqs.build("copy_last", 5, None)
    assert a[-2:] == [seqs.zero, seqs.tid("=")]


@pytest.mark.parametrize("align", ["absolute", "end"])
def test_distance_decreases_with_n(nope_curves, align):
    plain, _ = nope_curves
    l2 = plain["align"][align]["float32"]["l2"]
    assert l2[-1] < l2[0] / 10
    assert plain["align"][align]["float32"]["spearman_l2"] < -0.8


def test_bf16_collapses_where_float32_does_not(nope_curves):
    plain, _ = nope_curves
    cur = plain["align"]["absolute"]
    n = cur["bfloat16"]["identical_n"]
    assert n is not None, cur["bfloat16"]["l2"]
    i = plain["n"].index(n)
    assert cur["bfloat16"]["l2"][i] == 0.0
    assert not cur["float32"]["identical"][i] and cur["float32"]["l2"][i] > 0


def test_separators_increase_the_distance(nope_curves):
    plain, sep = nope_curves
    n = 300
    for align in ("absolute", "end"):
        p = plain["align"][align]["float32"]["l2"][plain["n"].index(n)]
        s = sep["align"][align]["float32"]["l2"][sep["n"].index(n)]
        assert s > 3 * p, (align, s, p)
    # and with separators bf16 still tells n from n+1 at every n
    assert not any(sep["align"]["absolute"]["bfloat16"]["identical"])


def test_learned_positions_end_aligned_distance_decreases(learned_gpt2):
    model, tok = load(str(learned_gpt2))
    cur = collapse_curve({"float32": model}, Sequences(tok), "ones", None, [1, 4, 16, 64, 120])
    l2 = cur["align"]["end"]["float32"]["l2"]
    assert l2[-1] < l2[0] / 10, l2


def test_synthetic_check_collapses_for_all_encodings():
    res = synthetic_check([1, 2, 4, 8, 16, 64, 256, 1024, 4096, 16384])
    assert set(res["encodings"]) == set(ENCODINGS)
    for enc, v in res["encodings"].items():
        assert v["collapsed"], (enc, v["l2"])
        assert np.median(v["l2"][-2:]) < np.median(v["l2"][:2]) / 10
    assert res["encodings"]["none"]["spearman"] < -0.8


def test_sensitivity_curve_has_one_value_per_position(nope_gpt2):
    _, model, tok = nope_gpt2
    ids, _ = Sequences(tok).build("ones", 40, 3)
    curve = sensitivity(model, ids, projections=4)
    assert len(curve) == len(ids)
    assert all(np.isfinite(curve)) and all(v > 0 for v in curve)


def test_cli_writes_json_and_plots(learned_gpt2, tmp_path):
    from synth2.cli import main

    out = tmp_path / "res"
    r = CliRunner().invoke(main, ["analyze", "collapse", "--model", str(learned_gpt2), "--out", str(out), "--max-len", "48",
                                  "--points", "8", "--dtypes", "float32,bfloat16", "--synthetic-max-n", "256"])
    assert r.exit_code == 0, r.output
    data = json.loads((out / "collapse.json").read_text())
    assert set(data["families"]) == {"ones", "digits_run", "copy_last"}
    assert data["behaviour"]["plain"]["counting"]["accuracy"] == "n/a"  # a random model does not follow prompts
    assert data["sensitivity"]["plain"]["length"] == len(data["sensitivity"]["plain"]["curve"])
    assert set(data["summary"]["synthetic"]) == set(ENCODINGS)
    for png in ("collapse_curves.png", "collapse_layers.png", "sensitivity.png", "behaviour.png", "synthetic.png"):
        assert (out / png).stat().st_size > 1000
