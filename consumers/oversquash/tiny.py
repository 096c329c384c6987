"""Tiny GPT-2 models the project builds itself: random init, or trained briefly on digit strings.

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
