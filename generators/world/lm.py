"""The world's caption LM: a small decoder trained on a text corpus that covers every concept.

The corpus is made of prompt/caption blocks in the demo spec's prompt format, one to three
per document, so the model follows zero- and few-shot prompts as an instruction LLM would.

Architecture (`LMConfig.arch`): "llama" (default: rotary positions, RMSNorm, SwiGLU, as the open LLMs
a user would plug in) or "gpt2" (learned absolute positions). The corpus documents are under ~80 tokens,
so a learned position table stays at its random initialisation beyond that; rotary positions are
relative and the model runs (and can be analysed, e.g. by consumers/oversquash) past its training length.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from generators.world.annotate import COUNT_WORD, random_caption
from generators.world.concepts import Scene
from generators.world.splits import scenes

log = logging.getLogger(__name__)

PROMPT_TEMPLATE = "Concepts: {concepts}\nCaption:"


def scene_concepts(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Concepts a prompt for this scene may name: its compositions, sometimes an extra attribute."""
    concepts = list(dict.fromkeys(scene.compositions))
    rng.shuffle(concepts)
    extras = []
    if scene.kind == "single":
        extras = [scene.objects[0].size, scene.position]
    elif scene.kind == "count":
        extras = [scene.objects[0].size, COUNT_WORD[scene.count]]
    elif scene.kind == "relation":
        extras = [scene.relation]
    for e in extras:
        if rng.random() < 0.25:
            concepts.append(e)
    return concepts


def block(concepts: list[str], caption: str) -> str:
    return PROMPT_TEMPLATE.format(concepts=", ".join(concepts)) + " " + caption + "\n"


def corpus_documents(n: int, seed: int, eos: str) -> list[str]:
    """`n` documents of 1-3 prompt/caption blocks over scenes balanced across all compositions."""
    rng = np.random.default_rng([seed, 20])
    docs, it = [], scenes("corpus", 3 * n, seed)
    for _ in range(n):
        k = int(rng.integers(1, 4))
        blocks = []
        for _ in range(k):
            s = next(it)
            blocks.append(block(scene_concepts(s, rng), random_caption(s, rng)))
        docs.append("".join(blocks) + eos)
    return docs


def _caption_mask(ids: torch.Tensor, tok) -> torch.Tensor:
    """True on tokens after a "Caption:" and up to (including) the newline that ends the caption."""
    newline = tok.convert_tokens_to_ids(tok.tokenize("\n"))[0]
    marker = tok.convert_tokens_to_ids(tok.tokenize(":"))[0]
    caption_word = tok.convert_tokens_to_ids(tok.tokenize("Caption"))
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for r in range(ids.shape[0]):
        row = ids[r].tolist()
        inside = False
        for j, t in enumerate(row):
            if inside:
                mask[r, j] = True
                if t == newline:
                    inside = False
            elif t == marker and j >= len(caption_word) and row[j - len(caption_word):j] == caption_word:
                inside = True
            elif t == tok.eos_token_id:
                mask[r, j] = True
    return mask


@dataclass
class LMConfig:
    layers: int = 2
    width: int = 128
    heads: int = 4
    positions: int = 192
    docs: int = 12000
    steps: int = 800
    batch_size: int = 64
    lr: float = 2e-3
    arch: str = "llama"  # "llama" (rotary positions) or "gpt2" (learned absolute positions)


def model_config(cfg: LMConfig, tok):
    """The transformers config of the caption LM for CFG (tied input/output embeddings either way)."""
    from transformers import GPT2Config, LlamaConfig

    ids = {"bos_token_id": tok.eos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if cfg.arch == "gpt2":
        return GPT2Config(vocab_size=len(tok), n_positions=cfg.positions, n_embd=cfg.width, n_layer=cfg.layers,
                          n_head=cfg.heads, **ids)
    if cfg.arch == "llama":
        # SwiGLU width 8/3 of the model width: the same MLP parameter count as GPT-2's 4x two-matrix MLP.
        inter = 8 * ((8 * cfg.width // 3 + 7) // 8)
        return LlamaConfig(vocab_size=len(tok), hidden_size=cfg.width, intermediate_size=inter,
                           num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                           num_key_value_heads=cfg.heads, max_position_embeddings=cfg.positions,
                           tie_word_embeddings=True, rms_norm_eps=1e-5, **ids)
    raise ValueError(f"unknown LM architecture {cfg.arch!r}; expected llama or gpt2")


def train_lm(out: Path, tokenizer_dir: Path, cfg: LMConfig, seed: int = 0) -> dict:
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    docs = corpus_documents(cfg.docs, seed, tok.eos_token)
    enc = tok(docs, padding="max_length", truncation=True, max_length=cfg.positions, return_tensors="pt")
    ids, attn = enc.input_ids, enc.attention_mask
    longest = int(attn.sum(1).max())
    ids, attn = ids[:, :longest], attn[:, :longest]
    # The causal-LM head shifts labels itself: labels are the inputs, with padding ignored. The
    # concept lists are random draws, so predicting them only adds noise: the loss covers the
    # captions and the document end (what the pipeline asks the model to write).
    labels = ids.masked_fill((attn == 0) | ~_caption_mask(ids, tok), -100)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(model_config(cfg, tok))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        idx = torch.randint(len(ids), (cfg.batch_size,), generator=gen)
        width = int(attn[idx].sum(1).max())
        loss = model(input_ids=ids[idx, :width], attention_mask=attn[idx, :width], labels=labels[idx, :width]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            log.info("lm step %d/%d loss %.3f (%.0fs)", step, cfg.steps, loss.item(), time.time() - t0)
    model.eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return {"steps": cfg.steps, "final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
            "parameters": sum(p.numel() for p in model.parameters()), "documents": cfg.docs, "arch": cfg.arch,
            "longest_document_tokens": longest}
