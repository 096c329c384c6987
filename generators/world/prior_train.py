"""Train the world's text-to-image-embedding prior (diffusers `PriorTransformer`).

Trained on the human-annotated split only: CLIP text encodings of a caption in, the CLIP
embedding of its image out. It must therefore compose colour-shape pairs it never saw.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generators.encoders import Encoder, TextEncoding

log = logging.getLogger(__name__)


@dataclass
class PriorConfig:
    heads: int = 4
    head_dim: int = 32
    layers: int = 4
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    drop_text: float = 0.1  # share of captions replaced by "" to learn the unconditional prior
    train_timesteps: int = 1000


def _select(enc: TextEncoding, idx: torch.Tensor) -> TextEncoding:
    return TextEncoding(enc.pooled[idx], enc.tokens[idx], enc.mask[idx])


def train_prior(out: Path, encoder: Encoder, image_emb: torch.Tensor, captions: list[list[str]],
                cfg: PriorConfig, seed: int = 0) -> dict:
    """`image_emb` [N, D] unit-norm CLIP image embeddings; `captions[i]` the phrasings of image i."""
    from diffusers import DDPMScheduler, PriorTransformer

    torch.manual_seed(seed)
    d = image_emb.shape[1]
    n_phr = max(len(c) for c in captions)
    flat = [c[i % len(c)] for c in captions for i in range(n_phr)] + [""]
    chunks = [encoder.encode_text(flat[i:i + 1024]) for i in range(0, len(flat), 1024)]
    text = TextEncoding(*(torch.cat([getattr(c, f) for c in chunks]) for f in ("pooled", "tokens", "mask")))
    null_index = len(flat) - 1

    mean, std = image_emb.mean(0, keepdim=True), image_emb.std(0, keepdim=True) + 1e-4
    prior = PriorTransformer(num_attention_heads=cfg.heads, attention_head_dim=cfg.head_dim, num_layers=cfg.layers,
                             embedding_dim=d, num_embeddings=encoder.context_length, additional_embeddings=4)
    with torch.no_grad():
        prior.clip_mean.copy_(mean)
        prior.clip_std.copy_(std)
    sched = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule="squaredcos_cap_v2",
                          prediction_type="sample", clip_sample=False)
    x0_all = (image_emb - mean) / std
    opt = torch.optim.AdamW(prior.parameters(), lr=cfg.lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    prior.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        idx = torch.randint(len(image_emb), (cfg.batch_size,), generator=gen)
        phr = torch.randint(n_phr, (cfg.batch_size,), generator=gen)
        tidx = idx * n_phr + phr
        tidx = torch.where(torch.rand(cfg.batch_size, generator=gen) < cfg.drop_text, null_index, tidx)
        cond = _select(text, tidx)
        x0 = x0_all[idx]
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(cfg.train_timesteps, (cfg.batch_size,), generator=gen)
        xt = sched.add_noise(x0, noise, t)
        pred = prior(xt, timestep=t, proj_embedding=cond.pooled, encoder_hidden_states=cond.tokens,
                     attention_mask=cond.mask).predicted_image_embedding
        loss = F.mse_loss(pred, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            log.info("prior step %d/%d loss %.4f (%.0fs)", step, cfg.steps, loss.item(), time.time() - t0)
    prior.eval()
    out.mkdir(parents=True, exist_ok=True)
    prior.save_pretrained(str(out / "prior"))
    sched.save_pretrained(str(out / "prior_scheduler"))
    return {"steps": cfg.steps, "final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
            "parameters": sum(p.numel() for p in prior.parameters())}
