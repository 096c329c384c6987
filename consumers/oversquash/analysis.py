"""Collapse curves, over-squashing sensitivity, separators and behaviour for any HF causal LM.

Sequences are built at the TOKEN level from the token ids of "1", "0", ",", ... so that `1…1` is n copies
of one token whatever the tokenizer merges. Each pair is (A, B) = (n, n+1) repeated tokens, with the same
head (BOS, prompt) and tail; the distance is between the last token's hidden state of A and of B, at every
layer (`hidden_states[-1]` is the final, post-norm one), in L2 and L-inf.

Two position alignments:
- "absolute": both sequences at positions 0..len-1, as the model normally sees them;
- "end": A's tokens after the head are shifted by one (or by the number of extra tokens B has), so the two
  last tokens share a position. For models with learned absolute position embeddings this isolates the
  count from the last token's own position vector (which otherwise differs between n and n+1 forever).

Precision: the model is run *in* bfloat16 / float16 (`model.to(dtype)`) and the pair is "identical" when the
last hidden states are bit-equal (distance exactly 0). The float32 distance is also compared with the bf16
spacing (ulp) at the representation's scale.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("synth2.oversquash")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
FAMILIES = ("ones", "digits_run", "copy_last")
ALIGNS = ("absolute", "end")


# ---------------------------------------------------------------- sequences

def with_sep(tokens: list[int], k: int | None, sep: int, from_end: bool = False) -> list[int]:
    """Insert SEP between groups of K tokens counted from the start (1111111 -> 111,111,1) or, FROM_END,
    from the end as thousands separators (1111111 -> 1,111,111). Either way n digits get (n-1)//K commas."""
    if not k:
        return list(tokens)
    out = []
    for i, t in enumerate(tokens):
        if i and (len(tokens) - i if from_end else i) % k == 0:
            out.append(sep)
        out.append(t)
    return out


class Sequences:
    """Token-level sequence families for one tokenizer."""

    def __init__(self, tok, bos: bool = True, seed: int = 0):
        self.tok = tok
        self.digit = {str(d): self.tid(str(d)) for d in range(10)}
        self.one, self.zero, self.sep = self.digit["1"], self.digit["0"], self.tid(",")
        self.head = [tok.bos_token_id] if bos and tok.bos_token_id is not None else []
        rng = random.Random(seed)
        self.random_digits = [rng.choice("0124567890") for _ in range(10)]  # the run after them is of "3"

    def tid(self, text: str) -> int:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"tokenizer gives no token for {text!r}")
        return ids[-1]

    def text(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def parts(self, family: str, n: int) -> tuple[list[int], list[int], list[int]]:
        """(head, body, tail): separators go into the body only."""
        if family == "ones":
            return self.head, [self.one] * n, []
        if family == "digits_run":
            return self.head, [self.digit[c] for c in self.random_digits] + [self.digit["3"]] * n, []
        if family == "copy_last":
            return self.head + self.text("L:"), [self.one] * n + [self.zero], self.text("=")
        raise ValueError(f"unknown family {family!r}")

    def build(self, family: str, n: int, k: int | None, from_end: bool = False) -> tuple[list[int], int]:
        head, body, tail = self.parts(family, n)
        return head + with_sep(body, k, self.sep, from_end) + tail, len(head)

    def max_n(self, family: str, k: int | None, max_len: int) -> int:
        n = 1
        while len(self.build(family, n + 2, k)[0]) <= max_len:  # B of the pair (n+1) must fit
            n += 1
        return n


def grid(max_n: int, points: int) -> list[int]:
    """Every n up to 8, then about POINTS geometric steps up to MAX_N."""
    g = set(range(1, min(8, max_n) + 1)) | {max_n}
    g |= {int(v) for v in np.geomspace(8, max(max_n, 8), max(points - 8, 2)).round()}
    return sorted(v for v in g if 1 <= v <= max_n)


# ---------------------------------------------------------------- model helpers

def has_position_table(model) -> bool:
    """True when the model adds a learned absolute position table to its inputs (GPT-2's `wpe`, OPT's
    `embed_positions`, ...): it has no representation for positions past the table. Rotary / ALiBi / no-PE
    models have none and run at any length (past their training length)."""
    return any(isinstance(m, torch.nn.Embedding) and re.search(r"wpe|position", name)
               for name, m in model.named_modules())


def max_positions(model) -> int:
    cfg = model.config
    for k in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        v = getattr(cfg, k, None)
        if isinstance(v, int) and v > 0:
            return v
    return 2048


def load(model_id: str, device: str = "cpu", gguf_file: str | None = None):
    """(model in float32, tokenizer): a folder, hub id, `.gguf` file or `pkg:PACKAGE/FILE.gguf` (the caption
    backend's loader, generators/pretrained.py)."""
    from generators.pretrained import load_causal_lm

    return load_causal_lm(model_id, gguf_file, dtype=torch.float32, device=device)


@torch.no_grad()
def last_states(model, ids: list[int], pos: list[int] | None = None) -> torch.Tensor:
    """(layers+1, d) float32: the last token's hidden state after the embeddings and every layer."""
    dev = next(model.parameters()).device
    kw = {"position_ids": torch.tensor([pos], device=dev)} if pos is not None else {}
    # An explicit mask: without one, transformers reads position ids with gaps (the "end" alignment) as
    # several packed sequences and masks attention across the gap.
    mask = torch.ones(1, len(ids), dtype=torch.long, device=dev)
    out = model(input_ids=torch.tensor([ids], device=dev), attention_mask=mask, output_hidden_states=True,
                use_cache=False, **kw)
    return torch.stack([h[0, -1] for h in out.hidden_states]).float().cpu()


def end_positions(len_a: int, len_b: int, head: int) -> list[int]:
    delta = len_b - len_a
    return list(range(head)) + list(range(head + delta, len_b))


def bf16_ulp(x: float) -> float:
    """Spacing of bfloat16 numbers at magnitude X (8 significant bits)."""
    return 2.0 ** (math.floor(math.log2(max(x, 1e-30))) - 7)


def _spearman(x, y) -> float | None:
    """Spearman's rank correlation (scipy), or None where either side is constant."""
    from scipy.stats import spearmanr

    if np.ptp(np.asarray(x, dtype=float)) == 0 or np.ptp(np.asarray(y, dtype=float)) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def _first(ns, flags):
    return next((n for n, f in zip(ns, flags) if f), None)


def _stable(ns, flags):
    return next((n for i, n in enumerate(ns) if all(flags[i:])), None)


# ---------------------------------------------------------------- collapse curves

def collapse_curve(models: dict, seqs: Sequences, family: str, k: int | None, ns: list[int],
                   from_end: bool = False, aligns: tuple[str, ...] = ALIGNS) -> dict:
    """Distances for the pairs (n, n+1) of FAMILY (separator every K, grouped from the start or FROM_END,
    or none) at every n in NS, for every alignment in ALIGNS and every dtype in MODELS ({dtype name: model})."""
    res = {"n": ns, "sep_every": k, "sep_from_end": bool(k and from_end), "length_tokens": [],
           "align": {a: {} for a in aligns}}
    for n in ns:
        res["length_tokens"].append(len(seqs.build(family, n, k, from_end)[0]))
    for dname, m in models.items():
        cache_b = {}
        for align in aligns:
            l2, linf, l2_layers, ident, ident_layers, scale = [], [], [], [], [], []
            for n in ns:
                a, head = seqs.build(family, n, k, from_end)
                b, _ = seqs.build(family, n + 1, k, from_end)
                if n not in cache_b:
                    cache_b[n] = last_states(m, b)
                hb = cache_b[n]
                ha = last_states(m, a, end_positions(len(a), len(b), head) if align == "end" else None)
                diff = ha - hb
                per_layer = diff.norm(dim=-1)
                l2.append(float(per_layer[-1]))
                linf.append(float(diff[-1].abs().max()))
                l2_layers.append([float(v) for v in per_layer])
                ident.append(bool(torch.equal(ha[-1], hb[-1])))
                ident_layers.append([bool(torch.equal(ha[i], hb[i])) for i in range(len(ha))])
                scale.append(float(hb[-1].abs().max()))
            layers = len(l2_layers[0])
            res["align"][align][dname] = {
                "l2": l2, "linf": linf, "l2_layers": l2_layers, "identical": ident, "scale_linf": scale,
                "identical_n": _first(ns, ident), "identical_from_n": _stable(ns, ident),
                "identical_n_per_layer": [_first(ns, [f[i] for f in ident_layers]) for i in range(layers)],
                "spearman_l2": _spearman(ns, l2),
                "ratio_last_first": (l2[-1] / l2[0]) if l2[0] > 0 else None,
            }
        if dname == "float32":
            for align in aligns:
                r = res["align"][align]["float32"]
                ratio = [li / bf16_ulp(s) for li, s in zip(r["linf"], r["scale_linf"])]
                r["linf_over_bf16_ulp"] = ratio
                r["below_half_bf16_ulp_n"] = _first(ns, [v < 0.5 for v in ratio])
    return res


# ---------------------------------------------------------------- over-squashing

def sensitivity(model, ids: list[int], projections: int = 16, seed: int = 0) -> list[float]:
    """||d h_last / d x_i||_F for every input position i (x_i: the input embedding), with h_last the
    final-layer last-token state. Estimated with PROJECTIONS Gaussian probes u, as E||u^T J_i||^2 = ||J_i||_F^2
    (one backward pass per probe instead of one per hidden dimension)."""
    dev = next(model.parameters()).device
    emb = model.get_input_embeddings()(torch.tensor([ids], device=dev)).detach().float().requires_grad_(True)
    out = model(inputs_embeds=emb, output_hidden_states=True, use_cache=False)
    h = out.hidden_states[-1][0, -1].float()
    g = torch.Generator().manual_seed(seed)
    acc = torch.zeros(len(ids), device=dev)
    for p in range(projections):
        u = torch.randn(h.shape[-1], generator=g).to(dev)
        (grad,) = torch.autograd.grad(h @ u, emb, retain_graph=p < projections - 1)
        acc += grad[0].pow(2).sum(-1)
    return [float(v) for v in (acc / projections).sqrt().cpu()]


def _sens_summary(curve: list[float]) -> dict:
    body = curve[:-1]
    q = max(len(body) // 4, 1)
    first, last = float(np.mean(body[:q])), float(np.mean(body[-q:]))
    return {"first_quarter_mean": first, "last_quarter_mean": last,
            "first_over_last": first / last if last > 0 else None, "self": curve[-1]}


# ---------------------------------------------------------------- behaviour

@torch.no_grad()
def greedy(model, ids: list[int], steps: int) -> list[int]:
    dev = next(model.parameters()).device
    x = torch.tensor([ids], device=dev)
    for _ in range(steps):
        nxt = model(input_ids=x, use_cache=False).logits[0, -1].argmax()
        x = torch.cat([x, nxt.view(1, 1)], dim=1)
    return x[0, len(ids):].tolist()


def behaviour(model, seqs: Sequences, lengths: list[int], k: int | None, trials: int = 5, seed: int = 0,
              min_acc: float = 0.5) -> dict:
    """Counting (`C:1…1=` -> n) and copying the last digit (`L:d…d=` -> last digit) against length.

    A task is "n/a" when the model's accuracy on the shortest lengths (n <= 5) is under MIN_ACC:
    it does not follow the prompt at all, so accuracy against length says nothing."""
    rng = random.Random(seed)
    count_acc, copy_acc = [], []
    for n in lengths:
        prompt = seqs.head + seqs.text("C:") + with_sep([seqs.one] * n, k, seqs.sep) + seqs.text("=")
        got = seqs.tok.decode(greedy(model, prompt, len(str(n)) + 1))
        count_acc.append(float(re.match(r"\d*", got).group() == str(n)))
        hits = 0
        for _ in range(trials):
            digits = [rng.choice("0123456789") for _ in range(n)]
            prompt = seqs.head + seqs.text("L:") + with_sep([seqs.digit[c] for c in digits], k, seqs.sep) + seqs.text("=")
            got = seqs.tok.decode(greedy(model, prompt, 1)).strip()
            hits += got[:1] == digits[-1]
        copy_acc.append(hits / trials)
    out = {"lengths": lengths, "sep_every": k}
    for name, acc in (("counting", count_acc), ("copying", copy_acc)):
        short = [a for n, a in zip(lengths, acc) if n <= 5]
        ok = bool(short) and float(np.mean(short)) >= min_acc
        out[name] = {"accuracy": acc if ok else "n/a", "raw_accuracy": acc, "follows_prompt": ok,
                     "short_accuracy": float(np.mean(short)) if short else None}
    return out


COUNT_QUESTION = "How many times does the digit 1 appear in the following sequence? Answer with the number only.\n"
COPY_QUESTION = "What is the last digit of the following sequence? Answer with that digit only.\n"


ANSWER_PREFIX = "The answer is"  # the space before a digit is its own token in SmolLM2's vocabulary


def chat_ids(tok, question: str, body: list[int], prefix: str = ANSWER_PREFIX) -> list[int]:
    """QUESTION then the token sequence BODY as one user turn of TOK's chat template, and the assistant's
    turn opened with PREFIX (so the next tokens are the answer): the digits go in as token ids (one per
    digit), whatever the tokenizer would merge."""
    marker = "\u2063"  # a character that appears in no prompt: where BODY goes
    text = tok.apply_chat_template([{"role": "user", "content": question + marker}], tokenize=False,
                                   add_generation_prompt=True)
    before, after = text.split(marker)
    enc = lambda t: list(tok(t, add_special_tokens=False)["input_ids"])  # noqa: E731
    return enc(before) + list(body) + enc(after + prefix)


@torch.no_grad()
def greedy_cached(model, ids: list[int], steps: int, stop: int | None = None) -> list[int]:
    """Greedy decoding with the KV cache (long prompts: one pass over the prompt, then one token a step)."""
    dev = next(model.parameters()).device
    out = model(input_ids=torch.tensor([ids], device=dev), use_cache=True)
    past, got = out.past_key_values, []
    for _ in range(steps):
        nxt = int(out.logits[0, -1].argmax())
        if nxt == stop:
            break
        got.append(nxt)
        out = model(input_ids=torch.tensor([[nxt]], device=dev), past_key_values=past, use_cache=True)
        past = out.past_key_values
    return got


def behaviour_chat(model, seqs: Sequences, lengths: list[int], k: int | None, trials: int = 3, seed: int = 0,
                   min_acc: float = 0.5) -> dict:
    """The counting and copying probes asked as questions in the model's chat template (an instruction model:
    the paper asks Gemma 7B the same way), the reply opened with "The answer is" and its first number read.
    Counting: n ones -> n. Copying: n-1 ones and a last digit other than 1 -> that digit (TRIALS digits per n).
    Same output shape as `behaviour`."""
    rng = random.Random(seed)
    tok = seqs.tok
    count_acc, copy_acc, answers = [], [], {}
    for n in lengths:
        got = tok.decode(greedy_cached(model, chat_ids(tok, COUNT_QUESTION, with_sep([seqs.one] * n, k, seqs.sep)), 5,
                                       stop=tok.eos_token_id), skip_special_tokens=True)
        m = re.search(r"\d+", got.replace(",", ""))
        count_acc.append(float(bool(m) and int(m.group()) == n))
        answers[n] = {"counting": got.strip()[:40]}
        hits = 0
        for _ in range(trials):
            last = rng.choice("023456789")
            body = with_sep([seqs.one] * (n - 1) + [seqs.digit[last]], k, seqs.sep)
            reply = tok.decode(greedy_cached(model, chat_ids(tok, COPY_QUESTION, body), 3, stop=tok.eos_token_id),
                               skip_special_tokens=True)
            d = re.search(r"\d", reply)
            hits += bool(d) and d.group() == last
            answers[n]["copying"] = reply.strip()[:40]
        copy_acc.append(hits / trials)
    out = {"lengths": lengths, "sep_every": k, "prompting": "chat", "answers": answers,
           "questions": {"counting": COUNT_QUESTION.strip(), "copying": COPY_QUESTION.strip()}}
    for name, acc in (("counting", count_acc), ("copying", copy_acc)):
        short = [a for n, a in zip(lengths, acc) if n <= 5]
        ok = bool(short) and float(np.mean(short)) >= min_acc
        out[name] = {"accuracy": acc if ok else "n/a", "raw_accuracy": acc, "follows_prompt": ok,
                     "short_accuracy": float(np.mean(short)) if short else None}
    return out


# ---------------------------------------------------------------- driver

def run_analysis(model_id: str, out_dir: str | Path | None = None, *, sep_every: int = 3, max_len: int | None = None,
                 points: int = 40, dtypes: tuple[str, ...] = ("float32", "bfloat16", "float16"),
                 families: tuple[str, ...] = FAMILIES, do_behaviour: bool = True, do_synthetic: bool = True,
                 synthetic_ns: list[int] | None = None, projections: int = 16, device: str = "cpu", bos: bool = True,
                 seed: int = 0, plots: bool = True, name: str | None = None,
                 progress: Callable[[int, int, str], None] | None = None,
                 sep_end_families: tuple[str, ...] = ("ones",), behaviour_lengths: list[int] | None = None,
                 behaviour_trials: int = 5, behaviour_train_max_n: int | None = None,
                 synthetic_result: dict | None = None, gguf_file: str | None = None,
                 aligns: tuple[str, ...] = ALIGNS, behaviour_prompting: str = "auto",
                 sensitivity_max_len: int | None = None) -> dict:
    """The whole analysis of MODEL_ID; writes `collapse.json` and PNG plots into OUT_DIR when given.
    PROGRESS(done, total, next_step) is called before each step (and once at the end).
    SEP_END_FAMILIES: families also measured with thousands-style separators (grouped from the end, "sep_end").
    BEHAVIOUR_LENGTHS / BEHAVIOUR_TRIALS: the lengths n of the counting/copying probes and the copying trials per n;
    BEHAVIOUR_TRAIN_MAX_N: the longest n the model was trained on (marked on the plot), when known.
    SYNTHETIC_RESULT: a `{"synthetic": ..., "synthetic_input_pe": ...}` computed once, reused instead of recomputing.
    GGUF_FILE: a GGUF file inside MODEL_ID (a `.gguf` MODEL_ID needs none). ALIGNS: the position alignments measured.
    BEHAVIOUR_PROMPTING: "raw" (`C:1…1=`), "chat" (a question in the chat template) or "auto" (chat when the
    tokenizer has a chat template). SENSITIVITY_MAX_LEN: the length of the sensitivity probe (default: the longest)."""
    steps = ["load", *(f"collapse {f}" for f in families), "sensitivity"] + ["behaviour"] * do_behaviour \
        + ["synthetic"] * do_synthetic + ["plots"] * bool(out_dir is not None and plots)
    tell = (lambda step: progress(steps.index(step), len(steps), step)) if progress else (lambda step: None)
    tell("load")
    model, tok = load(model_id, device, gguf_file)
    seqs = Sequences(tok, bos=bos, seed=seed)
    # A learned position table caps the length; a rotary / no-PE model runs past its configured (training)
    # length when MAX_LEN asks for it -- the regime where the paper's collapse shows.
    limit = min(max_positions(model), max_len or 10**9) if has_position_table(model) else (max_len or max_positions(model))
    models = {}
    for d in dtypes:
        models[d] = model if d == "float32" else copy.deepcopy(model).to(DTYPES[d]).eval()
    res = {"model": str(model_id), "name": name or Path(str(model_id)).name, "max_positions": max_positions(model),
           "position_table": has_position_table(model), "model_type": getattr(model.config, "model_type", None),
           "max_len_used": limit, "sep_every": sep_every, "dtypes": list(dtypes), "bos": bool(seqs.head),
           "token_ids": {"1": seqs.one, "0": seqs.zero, ",": seqs.sep}, "families": {}}
    res["tokenization_check"] = {s: seqs.text(s) for s in ("1", "111", "1 1 1", "1,1,1")}
    for fam in families:
        n_plain, n_sep = seqs.max_n(fam, None, limit), seqs.max_n(fam, sep_every, limit)
        if not res["position_table"]:  # no table to run out of: compare at equal n (the separated run is ~n/k longer)
            n_sep = n_plain
        ns = grid(n_plain, points)
        ns_sep = sorted({n for n in ns if n <= n_sep} | {n_sep})
        log.info("collapse curve %s: n up to %d (separators: %d)", fam, n_plain, n_sep)
        tell(f"collapse {fam}")
        plain = collapse_curve(models, seqs, fam, None, ns, aligns=aligns)
        sep = collapse_curve(models, seqs, fam, sep_every, ns_sep, aligns=aligns)
        res["families"][fam] = {"plain": plain, "sep": sep, "sep_ratio": _sep_ratio(plain, sep)}
        if fam in sep_end_families:
            sep_end = collapse_curve(models, seqs, fam, sep_every, ns_sep, from_end=True, aligns=aligns)
            res["families"][fam].update(sep_end=sep_end, sep_end_ratio=_sep_ratio(plain, sep_end))
    log.info("sensitivity")
    tell("sensitivity")
    sens = {}
    for label, k in (("plain", None), ("sep", sep_every)):
        ids, _ = seqs.build("ones", seqs.max_n("ones", k, min(limit, sensitivity_max_len or limit)), k)
        curve = sensitivity(model, ids, projections=projections, seed=seed)
        sens[label] = {"length": len(ids), "curve": curve, **_sens_summary(curve)}
    res["sensitivity"] = sens
    if do_behaviour:
        log.info("behaviour")
        tell("behaviour")
        lengths = [n for n in (behaviour_lengths or (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 96, 128,
                                                     192, 256, 384, 512))
                   if n + len(seqs.head) + 8 + n // max(sep_every, 1) <= limit]
        res["behaviour_train_max_n"] = behaviour_train_max_n
        chat = behaviour_prompting == "chat" or (behaviour_prompting == "auto" and bool(getattr(tok, "chat_template", None)))
        probe = behaviour_chat if chat else behaviour
        res["behaviour"] = {"plain": probe(model, seqs, lengths, None, trials=behaviour_trials, seed=seed),
                            "sep": probe(model, seqs, lengths, sep_every, trials=behaviour_trials, seed=seed)}
    if do_synthetic:
        from consumers.oversquash.synthetic import synthetic_check

        log.info("synthetic check")
        tell("synthetic")
        if synthetic_result:
            res.update({k: synthetic_result[k] for k in ("synthetic", "synthetic_input_pe") if k in synthetic_result})
        else:
            res["synthetic"] = synthetic_check(synthetic_ns)
            res["synthetic_input_pe"] = synthetic_check(synthetic_ns, mode="input")
    res["summary"] = summarize(res)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "collapse.json").write_text(json.dumps(_clean(res), indent=1))
        # names inside out_dir: the record (and a service run's links) never carries this machine's paths
        res["files"] = ["collapse.json"]
        if plots:
            from consumers.oversquash.plots import write_plots

            tell("plots")
            res["files"] += [Path(f).name for f in write_plots(res, out)]
        (out / "collapse.json").write_text(json.dumps(_clean(res), indent=1))
    if progress:
        progress(len(steps), len(steps), "done")
    return res


def _sep_ratio(plain: dict, sep: dict) -> dict:
    """L2 distance with separators / without, at every n both curves have, per alignment, for float32 (`ratio`)
    and every other dtype (`ratio_<dtype>`; None where the plain distance is 0)."""
    out = {}
    common = [n for n in plain["n"] if n in sep["n"]]
    for align in plain["align"]:
        p, s = plain["align"][align], sep["align"][align]
        if "float32" not in p or "float32" not in s:
            continue
        out[align] = {"n": common}
        for d in p:
            pi, si = dict(zip(plain["n"], p[d]["l2"])), dict(zip(sep["n"], s[d]["l2"]))
            out[align]["ratio" if d == "float32" else f"ratio_{d}"] = [si[n] / pi[n] if pi[n] > 0 else None for n in common]
    return out


def _trend(ns: list[int], l2: list[float]) -> dict:
    """How the f32 distance falls with n: median over the first / last quarter of the grid, Spearman rank
    correlation, least-squares slope of log L2 on log n (n >= 8). `decreasing`: the last-quarter median is
    under a tenth of the first-quarter one, or Spearman < -0.8 (single points oscillate, e.g. with RoPE)."""
    q = max(len(ns) // 4, 1)
    first, last = float(np.median(l2[:q])), float(np.median(l2[-q:]))
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, l2) if n >= 8 and v > 0]
    slope = float(np.polyfit(*zip(*pts), 1)[0]) if len(pts) >= 3 else None
    rho = _spearman(ns, l2)
    return {"first_quarter_median": first, "last_quarter_median": last,
            "quarter_drop": first / last if last > 0 else None, "spearman": rho, "loglog_slope": slope,
            "decreasing": bool(last < first / 10 or (rho is not None and rho < -0.8))}


def _separators(r: dict, variant: str, align: str, at: int | None) -> dict | None:
    """Plain vs separated distances (VARIANT: "sep" or "sep_end") at the bf16 collapse n AT (else the largest n
    both curves reach), in float32 and bfloat16, and the f32 ratio over the bf16-collapse region n >= AT."""
    if variant not in r:
        return None
    plain, sep = r["plain"], r[variant]
    common = [n for n in plain["n"] if n in sep["n"]]
    if not common:
        return None
    bf = plain["align"][align].get("bfloat16")
    if bf is not None and at is not None and at not in common:  # the first bf16-identical n the separated curve has
        at = next((n for n, same in zip(plain["n"], bf["identical"]) if same and n in common), None)
    n = at if at in common else max(common)
    out = {"n": n, "why": "bf16 collapse n" if n == at else "largest n both curves reach (no bf16 collapse there)",
           "grouping": "from the end (1,111,111)" if sep.get("sep_from_end") else "from the start (111,111,1)"}
    for d in ("float32", "bfloat16", "float16"):
        if d not in plain["align"][align]:
            continue
        pc, sc = plain["align"][align][d], sep["align"][align][d]
        pv, sv = pc["l2"][plain["n"].index(n)], sc["l2"][sep["n"].index(n)]
        ratio = sv / pv if pv > 0 else ("inf" if sv > 0 else None)  # "inf": plain identical, separated not
        out[d] = {"plain_l2": pv, "sep_l2": sv, "ratio": ratio, "plain_identical": pv == 0.0, "sep_identical": sv == 0.0,
                  "sep_identical_n": sc["identical_n"]}
    region = [n2 for n2 in common if n2 >= n]
    f32p, f32s = plain["align"][align]["float32"], sep["align"][align]["float32"]
    rr = [f32s["l2"][sep["n"].index(m)] / f32p["l2"][plain["n"].index(m)] for m in region if f32p["l2"][plain["n"].index(m)] > 0]
    out["f32_ratio_median_from_n"] = float(np.median(rr)) if rr else None
    out["f32_ratio_min_from_n"] = float(np.min(rr)) if rr else None
    out["f32_ratio_n_range"] = [n, max(region)]
    return out


def summarize(res: dict) -> dict:
    """Headline figures: per family and alignment, the collapse n per precision (plain and with separators),
    the trend of the f32 distance, and the separator ratios at the bf16 collapse n."""
    s = {"families": {}}
    for fam, r in res["families"].items():
        fs = {}
        for align in r["plain"]["align"]:
            pa, sa = r["plain"]["align"][align], r["sep"]["align"][align]
            f32 = pa.get("float32", {})
            trend = _trend(r["plain"]["n"], f32["l2"]) if f32 else {}
            a = {
                "f32_l2_first": f32.get("l2", [None])[0], "f32_l2_last": f32.get("l2", [None])[-1],
                "n_first": r["plain"]["n"][0], "n_last": r["plain"]["n"][-1],
                "f32_spearman": f32.get("spearman_l2"), "f32_identical_n": f32.get("identical_n"),
                "f32_below_half_bf16_ulp_n": f32.get("below_half_bf16_ulp_n"),
                "decreasing": trend.get("decreasing", False), "f32_trend": trend,
            }
            for d in res["dtypes"]:
                if d == "float32":
                    continue
                a[f"{d}_identical_n"] = pa[d]["identical_n"]
                a[f"{d}_identical_from_n"] = pa[d]["identical_from_n"]
                a[f"{d}_identical_n_sep"] = sa[d]["identical_n"]
            at = a.get("bfloat16_identical_n")
            seps = {v: _separators(r, v, align, at) for v in ("sep", "sep_end")}
            a["separators"] = {k: v for k, v in seps.items() if v}
            main = seps["sep"]
            if main:  # the earlier flat form, kept for readers of older results
                a["sep_ratio_at"] = {"n": main["n"], "why": main["why"], "f32_l2_ratio": main["float32"]["ratio"]}
                if "bfloat16" in main:
                    a["sep_ratio_at"].update(bf16_sep_identical=main["bfloat16"]["sep_identical"],
                                             bf16_sep_l2=main["bfloat16"]["sep_l2"])
            fs[align] = a
        s["families"][fam] = fs
    if "sensitivity" in res:
        s["sensitivity"] = {k: {kk: v[kk] for kk in ("length", "first_over_last", "self")} for k, v in res["sensitivity"].items()}
    if "behaviour" in res:
        s["behaviour"] = {k: {t: ("n/a" if not v[t]["follows_prompt"] else dict(zip(v["lengths"], v[t]["accuracy"])))
                              for t in ("counting", "copying")} for k, v in res["behaviour"].items()}
    for key in ("synthetic", "synthetic_input_pe"):
        if key in res:
            s[key] = {e: {"collapsed": v["collapsed"], "ratio_last_first": v["ratio_last_first"],
                          "bf16_identical_n": v["bf16_identical_n"]} for e, v in res[key]["encodings"].items()}
    return s


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
