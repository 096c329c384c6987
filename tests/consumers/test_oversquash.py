"""Representational collapse / over-squashing analysis (consumers/oversquash) on tiny GPT-2 and Llama models
built here (saved with save_pretrained, loaded back with from_pretrained) and on the synthetic attention layer.

The acceptance properties (distance falling with n, an n where bf16 makes the pair identical, separators keeping
the distance >= 10x larger there) are asserted on a random tiny Llama (rotary positions, run past its configured
length) and, in bf16, on a random no-PE GPT-2."""

import copy
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from consumers.oversquash.analysis import (
    Sequences,
    behaviour,
    collapse_curve,
    has_position_table,
    load,
    run_analysis,
    sensitivity,
    with_sep,
)
from consumers.oversquash.synthetic import ENCODINGS, synthetic_check
from consumers.oversquash.tiny import build_task_gpt2, build_tiny_gpt2, build_tiny_llama, make_char_tokenizer, task_rows

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
    # thousands-style grouping (from the end): 1111111 -> 1,111,111; n digits always get (n-1)//3 commas
    assert with_sep([1] * 7, 3, 9, from_end=True) == [1, 9, 1, 1, 1, 9, 1, 1, 1]
    for n in range(1, 12):
        assert with_sep([1] * n, 3, 9).count(9) == with_sep([1] * n, 3, 9, from_end=True).count(9) == (n - 1) // 3
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


def test_bf16_collapse_where_separators_keep_the_pair_apart(nope_curves):
    """In the precision where the plain pair collapses (bit-equal), the separated pair at the same n is not:
    the separated distance is infinitely larger there."""
    plain, sep = nope_curves
    bf, bf_sep = plain["align"]["absolute"]["bfloat16"], sep["align"]["absolute"]["bfloat16"]
    collapsed = [n for n, same in zip(plain["n"], bf["identical"]) if same and n in sep["n"]]
    assert collapsed, bf["l2"]
    for n in collapsed:
        assert bf_sep["l2"][sep["n"].index(n)] > 0


@pytest.fixture(scope="module")
def llama_result(tmp_path_factory):
    """run_analysis on a random tiny Llama configured for 64 positions, run to 720 tokens (rotary: no table)."""
    path = tmp_path_factory.mktemp("llama")
    build_tiny_llama(path, positions=64, seed=0)
    res = run_analysis(str(path), families=("ones",), max_len=720, points=16, dtypes=("float32", "bfloat16"),
                       do_behaviour=False, do_synthetic=False, plots=False, projections=2)
    return res


def test_rotary_model_runs_past_its_configured_positions(llama_result):
    assert llama_result["position_table"] is False and llama_result["max_positions"] == 64
    assert llama_result["max_len_used"] == 720
    fam = llama_result["families"]["ones"]
    assert fam["plain"]["length_tokens"][-1] > 64 and fam["sep"]["n"] == fam["plain"]["n"]  # separators at equal n


def test_acceptance_on_a_tiny_rotary_model(llama_result):
    a = llama_result["summary"]["families"]["ones"]["absolute"]
    assert a["decreasing"] and a["f32_trend"]["quarter_drop"] > 100 and a["f32_trend"]["loglog_slope"] < -1
    n = a["bfloat16_identical_n"]
    assert n is not None
    for variant in ("sep", "sep_end"):  # commas from the start (111,111,1) and thousands-style (1,111,111)
        s = a["separators"][variant]
        assert s["n"] == n and s["why"] == "bf16 collapse n"
        assert s["bfloat16"]["plain_identical"] and s["bfloat16"]["sep_l2"] > 0 and s["bfloat16"]["ratio"] == "inf"
        assert s["f32_ratio_median_from_n"] >= 10, s
        assert s["float32"]["ratio"] > 3, s


def test_position_table_detection(nope_gpt2, learned_gpt2):
    assert has_position_table(load(str(learned_gpt2))[0])
    assert has_position_table(nope_gpt2[1])  # a zeroed table is still a table: the length stays capped


def test_task_rows_supervise_the_answers_only(tmp_path):
    import random

    tok = make_char_tokenizer(tmp_path)
    vocab = tok.get_vocab()
    ids, mask = task_rows(random.Random(0), vocab, tok.bos_token_id, rows=4, width=96, max_n=12)
    assert all(len(r) == 96 and len(m) == 96 for r, m in zip(ids, mask))
    text = tok.decode(ids[0])
    assert text.startswith("<|endoftext|>C:") or text.startswith("<|endoftext|>L:")
    for r, m in zip(ids, mask):
        for i, on in enumerate(m):
            if on:  # an answer token: a digit or the newline that ends it, right after "=" or another answer token
                assert tok.decode([r[i]]) in set("0123456789\n") and (m[i - 1] or r[i - 1] == vocab["="])
    # a counting line's answer is its number of ones
    line = text.split("<|endoftext|>")[1]
    if line.startswith("C:"):
        body, ans = line[2:].split("=")
        assert int(ans.split("\n")[0]) == body.count("1")


def test_task_gpt2_reloads_and_answers_the_probes(tmp_path):
    info = build_task_gpt2(tmp_path, max_steps=2, n_positions=64, max_n=8, batch_size=2)
    assert info["steps"] == 2
    model, tok = load(str(tmp_path))
    b = behaviour(model, Sequences(tok), [1, 2, 4], 3, trials=2)
    assert set(b) >= {"counting", "copying"} and len(b["counting"]["raw_accuracy"]) == 3


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
    r = CliRunner().invoke(main, ["analyze", "collapse", "--model", str(learned_gpt2), "--out", str(out), "--max-len", "40",
                                  "--points", "6", "--dtypes", "float32,bfloat16", "--synthetic-max-n", "64"])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()  # a short table, not the whole summary (that is collapse.json, or --json)
    assert lines[0].split()[:2] == ["family", "align"] and len(lines) < 30, r.stdout
    assert sum(ln.startswith(("ones ", "digits_run ", "copy_last ")) for ln in lines) == 6
    data = json.loads((out / "collapse.json").read_text())
    assert set(data["families"]) == {"ones", "digits_run", "copy_last"}
    assert data["behaviour"]["plain"]["counting"]["accuracy"] == "n/a"  # a random model does not follow prompts
    assert data["sensitivity"]["plain"]["length"] == len(data["sensitivity"]["plain"]["curve"])
    assert set(data["summary"]["synthetic"]) == set(ENCODINGS)
    for png in ("collapse_curves.png", "collapse_layers.png", "sensitivity.png", "behaviour.png", "synthetic.png"):
        assert (out / png).stat().st_size > 1000


def test_chat_probes_splice_digits_as_tokens_into_the_chat_template(tmp_path):
    """The instruction-model probes: the question and the digits in one user turn of the chat template, the
    assistant turn opened with the answer prefix; the digit tokens go in as they are, one per digit."""
    from consumers.oversquash.analysis import ANSWER_PREFIX, COPY_QUESTION, behaviour_chat, chat_ids

    build_tiny_llama(tmp_path, positions=512)
    model, tok = load(str(tmp_path))
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }};\n{% endfor %}"  # the tokenizer's chars
                         "{% if add_generation_prompt %}assistant: {% endif %}")
    seqs = Sequences(tok)
    body = [seqs.one] * 5 + [seqs.digit["7"]]
    ids = chat_ids(tok, COPY_QUESTION, body)
    text = tok.decode(ids)
    assert text.startswith("user: " + COPY_QUESTION) and text.endswith(";\nassistant: " + ANSWER_PREFIX)
    start = len(tok("user: " + COPY_QUESTION, add_special_tokens=False)["input_ids"])
    assert ids[start:start + len(body)] == body
    res = behaviour_chat(model, seqs, [1, 3, 40], None, trials=2)
    assert res["prompting"] == "chat" and res["lengths"] == [1, 3, 40]
    for task in ("counting", "copying"):
        acc = res[task]["raw_accuracy"]
        assert len(acc) == 3 and all(0.0 <= a <= 1.0 for a in acc)
        assert res[task]["follows_prompt"] == (res[task]["accuracy"] != "n/a")
