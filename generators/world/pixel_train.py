"""Train the world's pixel decoder: CLIP image embedding → image, unCLIP-style.

A diffusers `UNet2DConditionModel` with `class_embed_type="projection"` (the image embedding is
projected into the timestep embedding, as unCLIP's decoder does) and no cross-attention,
trained as a DDPM (clean-image prediction by default, cosine schedule) on the pretrain split's images and
their CLIP embeddings. The embedding is dropped (zeroed) for a share of the batch so that
classifier-free guidance works. Saved as `decoder/` + `decoder_scheduler/` with
`save_pretrained`; `generators.pixel.EmbeddingDecoder.from_pretrained` loads it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass
class PixelConfig:
    image_size: int = 32  # decoded resolution; the encoder's preprocessing resizes to its own input size
    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    mid_attention: bool = True
    steps: int = 1200
    batch_size: int = 64
    lr: float = 2e-3
    drop_cond: float = 0.1  # share of embeddings zeroed to learn the unconditional model
    cond_noise: float = 0.2  # norm of Gaussian noise added to the unit-norm embedding: prior samples are not exact
    prediction: str = "sample"  # "sample" (x0) learns content in few steps; "epsilon" needs far longer training
    train_timesteps: int = 1000
    eval_steps: int = 25  # DDIM steps when measuring the decoder
    eval_scenes: int = 192  # test scenes decoded when measuring it


def _resize(images: np.ndarray, size: int) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, size, size] in [-1, 1] (area downsampling)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x


def make_unet(cfg: PixelConfig, embed_dim: int):
    from diffusers import UNet2DConditionModel

    n = len(cfg.channels)
    return UNet2DConditionModel(
        sample_size=cfg.image_size, in_channels=3, out_channels=3, layers_per_block=cfg.layers_per_block,
        block_out_channels=tuple(cfg.channels), down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n, mid_block_type="UNetMidBlock2D" if cfg.mid_attention else None,
        norm_num_groups=8, class_embed_type="projection", projection_class_embeddings_input_dim=embed_dim,
        cross_attention_dim=embed_dim, attention_head_dim=8)


def train_decoder(out: Path, images: np.ndarray, image_emb: torch.Tensor, cfg: PixelConfig, seed: int = 0) -> dict:
    """`images` uint8 [N, H, W, 3]; `image_emb` [N, D] their unit-norm CLIP image embeddings."""
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    x_all = _resize(images, cfg.image_size)
    emb_all = image_emb.float()
    unet = make_unet(cfg, emb_all.shape[1])
    sched = DDPMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule="squaredcos_cap_v2",
                          prediction_type=cfg.prediction, clip_sample=True)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    unet.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        idx = torch.randint(len(x_all), (cfg.batch_size,), generator=gen)
        x0 = x_all[idx]
        d = emb_all.shape[1]
        cond = emb_all[idx] + cfg.cond_noise / d ** 0.5 * torch.randn(emb_all[idx].shape, generator=gen)
        cond = F.normalize(cond, dim=-1)
        cond = torch.where((torch.rand(cfg.batch_size, 1, generator=gen) < cfg.drop_cond), 0.0, cond)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(cfg.train_timesteps, (cfg.batch_size,), generator=gen)
        pred = unet(sched.add_noise(x0, noise, t), t, encoder_hidden_states=None, class_labels=cond).sample
        loss = F.mse_loss(pred, x0 if cfg.prediction == "sample" else noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        losses.append(loss.item())
        if step % 200 == 0 or step == cfg.steps - 1:
            log.info("decoder step %d/%d loss %.4f (%.0fs)", step, cfg.steps, loss.item(), time.time() - t0)
    unet.eval()
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(str(out / "decoder"))
    sched.save_pretrained(str(out / "decoder_scheduler"))
    return {"steps": cfg.steps, "image_size": cfg.image_size, "final_loss": float(np.mean(losses[-20:])),
            "seconds": time.time() - t0, "parameters": sum(p.numel() for p in unet.parameters())}


def decoder_quality(encoder, decoder, prior, image_emb: torch.Tensor, captions: list[str], scenes: list,
                    held_out: set[str], steps: int = 25, limit: int = 192) -> dict:
    """How much of an image embedding survives decoding to pixels and re-encoding, on the first
    `limit` test scenes: CLIP zero-shot colour/shape accuracy and caption retrieval R@1 of
    (a) the real images, (b) images decoded from the real images' embeddings, (c) images decoded
    from prior samples of their captions (the pixel synthesis path); cosine of (b) to the real
    embedding."""
    from generators.world.evaluate import clip_zero_shot, composition_prototypes, retrieval_r1

    n = min(limit, len(captions))
    emb, caps, scs = image_emb[:n], captions[:n], scenes[:n]
    held = np.array([any(c in held_out for c in s.compositions) for s in scs])

    def r1(e: torch.Tensor) -> dict:
        hits = retrieval_r1(e, caps, scs, encoder, candidates=min(100, n))
        return {"all": float(hits.mean()), "held_out": float(hits[held].mean()) if held.any() else None}

    def reencode(e: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, n, 128):
            imgs = decoder.decode(e[i:i + 128], list(range(i, min(i + 128, n))), steps=steps)
            out.append(encoder.encode_images(imgs))
        return torch.cat(out)

    t0 = time.time()
    protos = composition_prototypes(encoder)
    from_true = reencode(emb)
    text = encoder.encode_text(caps)
    sampled = prior.sample(text, list(range(n)), null=encoder.encode_text([""]), steps=25)
    from_prior = reencode(sampled)
    return {"scenes": n, "decoder_steps": steps, "candidates": min(100, n),
            "real": {"zero_shot": clip_zero_shot(encoder, emb, scs, held_out, protos), "r1": r1(emb)},
            "decoded_from_real_embedding": {"zero_shot": clip_zero_shot(encoder, from_true, scs, held_out, protos),
                                            "r1": r1(from_true),
                                            "cosine_to_real": float((from_true * emb).sum(1).mean())},
            "decoded_from_prior_sample": {"zero_shot": clip_zero_shot(encoder, from_prior, scs, held_out, protos),
                                          "r1": r1(from_prior)},
            "seconds": round(time.time() - t0, 2)}
