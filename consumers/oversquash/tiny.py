"""Tiny models the project builds itself: GPT-2s (random init, trained briefly on digit strings, or trained on
the paper's counting/copying prompts) and a random Llama (rotary positions).

Both go through `save_pretrained` and come back through `from_pretrained`, like any hub model.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

CHARS = "0123456789,=:;. \nabcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ?!-"


def make_char_tokenizer(out_dir: str | Path):
    """A character-level tokenizer (one token per character) saved as a fast HF tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<|endoftext|>": 0, "<|pad|>": 1, "<unk>": 2}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                  pad_token="<|pad|>", unk_token="<unk>")
    tok.save_pretrained(str(out_dir))
    return tok


def build_tiny_llama(out_dir: str | Path, *, n_layer: int = 2, width: int = 32, heads: int = 2, positions: int = 64,
                     seed: int = 0) -> dict:
    """Write a randomly initialised tiny `LlamaForCausalLM` (rotary positions, + char tokenizer) to OUT_DIR.
    POSITIONS is only its configured length: with rotary positions it runs past it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_char_tokenizer(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=width, intermediate_size=8 * ((8 * width // 3 + 7) // 8),
                      num_hidden_layers=n_layer, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=positions, tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(str(out))
    return {"path": str(out)}


def _sep(s: str, k: int) -> str:
    return ",".join(s[i:i + k] for i in range(0, len(s), k))


def training_text(rng: random.Random, max_n: int) -> str:
    """One training line: counting (`C:111=3`) or copying the last digit (`L:5281=1`), half with separators."""
    n = rng.randint(1, max_n)
    if rng.random() < 0.5:
        body, ans = "1" * n, str(n)
        head = "C:"
    else:
        body = "".join(rng.choice("0123456789") for _ in range(n))
        body = body if rng.random() < 0.5 else "1" * (n - 1) + rng.choice("0123456789")
        ans, head = body[-1], "L:"
    if rng.random() < 0.5:
        body = _sep(body, 3)
    return f"{head}{body}={ans}\n"


def build_tiny_gpt2(out_dir: str | Path, *, n_layer: int = 2, n_embd: int = 64, n_head: int = 4, n_positions: int = 128,
                    train_seconds: float = 0.0, seed: int = 0, batch_size: int = 16, lr: float = 3e-3,
                    initializer_range: float = 0.02, nope: bool = False, train_len: int | None = None) -> dict:
    """Write a tiny `GPT2LMHeadModel` (+ char tokenizer) to OUT_DIR; optionally train it for TRAIN_SECONDS
    on counting/copying strings. Returns {"path", "steps", "final_loss"}.

    NOPE zeroes (and freezes) the learned position table: the GPT-2 architecture with no positional
    encoding, where position only enters through the causal mask (values of a repeated token are then
    identical at every position, as with RoPE). TRAIN_LEN: training window (default N_POSITIONS)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_char_tokenizer(out)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                     initializer_range=initializer_range)
    model = GPT2LMHeadModel(cfg)
    if nope:
        model.transformer.wpe.weight.data.zero_()
        model.transformer.wpe.weight.requires_grad_(False)
    steps, loss_v = 0, None
    if train_seconds > 0:
        rng = random.Random(seed)
        vocab = tok.get_vocab()  # one token per character: encode without the tokenizer's per-call overhead
        win = min(train_len or n_positions, n_positions)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.01)
        model.train()
        t0 = time.monotonic()
        while time.monotonic() - t0 < train_seconds:
            # pack lines into fixed-length windows starting at a BOS token
            ids = []
            for _ in range(batch_size):
                row = [tok.bos_token_id]
                while len(row) < win:
                    row += [vocab[c] for c in training_text(rng, max_n=min(60, win // 2))]
                ids.append(row[:win])
            x = torch.tensor(ids)
            loss = model(input_ids=x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps, loss_v = steps + 1, float(loss.detach())
        model.eval()
    model.save_pretrained(str(out))
    return {"path": str(out), "steps": steps, "final_loss": loss_v}


def task_rows(rng: random.Random, vocab: dict[str, int], bos: int, rows: int, width: int, max_n: int):
    """ROWS packed rows of WIDTH tokens, each a run of `BOS line` examples (line: `training_text`), and a mask
    that is True on the answer tokens (after `=`, up to the newline): what the loss is computed on."""
    ids, mask = [], []
    eq = vocab["="]
    for _ in range(rows):
        row, m = [], []
        while len(row) < width:
            toks = [bos] + [vocab[c] for c in training_text(rng, max_n)]
            after = toks.index(eq)
            row += toks
            m += [False] * (after + 1) + [True] * (len(toks) - after - 1)
        ids.append(row[:width])
        mask.append(m[:width])
    return ids, mask


def build_task_gpt2(out_dir: str | Path, *, max_n: int = 48, n_layer: int = 2, n_embd: int = 64, n_head: int = 4,
                    n_positions: int = 256, train_seconds: float = 150.0, max_steps: int | None = None, seed: int = 0,
                    batch_size: int = 8, lr: float = 5e-3) -> dict:
    """A tiny `GPT2LMHeadModel` (learned absolute positions, + char tokenizer) trained on the paper's counting
    (`C:111=3`) and last-digit copying (`L:5281=1`) prompts with n <= MAX_N digits, half with a comma every 3
    digits, every example starting with BOS as the probes in `analysis.behaviour` do. Examples are packed into
    N_POSITIONS-token rows so every position of the table is trained; the loss covers the answers only.
    Stops after TRAIN_SECONDS (or MAX_STEPS). Returns {"path", "steps", "final_loss", "max_n", "seconds"}."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_char_tokenizer(out)
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = GPT2LMHeadModel(cfg)
    rng, vocab = random.Random(seed), tok.get_vocab()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    model.train()
    t0, steps, losses = time.monotonic(), 0, []
    while time.monotonic() - t0 < train_seconds and (max_steps is None or steps < max_steps):
        ids, mask = task_rows(rng, vocab, tok.bos_token_id, batch_size, n_positions, max_n)
        x = torch.tensor(ids)
        labels = x.masked_fill(~torch.tensor(mask), -100)
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps += 1
        losses.append(float(loss.detach()))
    model.eval()
    model.save_pretrained(str(out))
    return {"path": str(out), "steps": steps, "final_loss": float(sum(losses[-20:]) / max(len(losses[-20:]), 1)),
            "max_n": max_n, "seconds": round(time.monotonic() - t0, 1)}
