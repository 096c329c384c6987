"""Train the world's CLIP with open_clip and save it as an open_clip hub folder.

The folder (`open_clip_config.json`, `open_clip_model.safetensors`, tokenizer files) has the
layout of an `hf-hub:` open_clip repository, so `local-dir:PATH` loads it through the same
`open_clip.create_model_and_transforms` call that loads `hf-hub:laion/...`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

log = logging.getLogger(__name__)

MEAN = (0.25, 0.25, 0.25)
STD = (0.25, 0.25, 0.25)


@dataclass
class ClipConfig:
    embed_dim: int = 128
    image_size: int = 64
    vision_width: int = 16  # ModifiedResNet stem width; a CNN separates shapes better than a tiny ViT
    vision_layers: tuple[int, ...] = (1, 1, 1, 1)
    text_width: int = 128
    text_layers: int = 2
    text_heads: int = 4
    context_length: int = 16  # the longest world caption is 13 tokens with its end-of-text
    steps: int = 600
    batch_size: int = 256
    lr: float = 2e-3
    # Hard negatives (NegCLIP, Yuksekgonul et al. 2023): each image also scores its own caption with the
    # shape word swapped for every other shape. In-batch negatives almost always differ in colour,
    # position or size too, so they teach shape slowly; these differ in shape only.
    shape_negatives: bool = False


def model_cfg(cfg: ClipConfig, vocab_size: int, eos_id: int, pad_id: int) -> dict:
    return {
        "embed_dim": cfg.embed_dim,
        "vision_cfg": {"image_size": cfg.image_size, "layers": list(cfg.vision_layers),
                       "width": cfg.vision_width, "head_width": 32},
        "text_cfg": {"context_length": cfg.context_length, "vocab_size": vocab_size, "width": cfg.text_width,
                     "heads": cfg.text_heads, "layers": cfg.text_layers, "hf_tokenizer_name": "synth2-world-clip",
                     "pool_type": "eos", "eos_id": eos_id, "pad_id": pad_id},
    }


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def shape_swapped(scene) -> list[list[str]]:
    """Per phrasing of `scene`'s captions, the same phrasing with the (first) object's shape swapped for
    each other shape: the hard negatives of `ClipConfig.shape_negatives`."""
    from dataclasses import replace

    from generators.world.annotate import captions
    from generators.world.concepts import SHAPES

    first = scene.objects[0]
    swaps = [captions(replace(scene, objects=(replace(first, shape=sh),) + scene.objects[1:]))
             for sh in SHAPES if sh != first.shape]
    return [[sw[p] for sw in swaps] for p in range(len(swaps[0]))]


def train_clip(out: Path, images: np.ndarray, captions: list[list[str]], tokenizer_dir: Path,
               cfg: ClipConfig, seed: int = 0, negatives: list[list[list[str]]] | None = None) -> dict:
    """Contrastive training on (image, one of its phrasings); saves the hub-style folder to `out`.
    `negatives` (with `cfg.shape_negatives`): per image, per phrasing, its hard-negative captions."""
    import open_clip
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    mcfg = model_cfg(cfg, len(tok), tok.eos_token_id, tok.pad_token_id)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**mcfg)
    n_phr = max(len(c) for c in captions)
    flat = [c[i % len(c)] for c in captions for i in range(n_phr)]
    ids = tok(flat, padding="max_length", truncation=True, max_length=cfg.context_length,
              return_tensors="pt").input_ids.view(len(captions), n_phr, cfg.context_length)
    neg_ids = None
    if cfg.shape_negatives:
        if negatives is None or len(negatives) != len(captions):
            raise ValueError("shape_negatives needs one list of hard-negative captions per image")
        k = len(negatives[0][0])
        flat_neg = [t for ng in negatives for i in range(n_phr) for t in ng[i % len(ng)]]
        neg_ids = tok(flat_neg, padding="max_length", truncation=True, max_length=cfg.context_length,
                      return_tensors="pt").input_ids.view(len(captions), n_phr, k, cfg.context_length)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        phr = torch.randint(n_phr, (cfg.batch_size,), generator=gen)
        img = _to_tensor(images[idx.numpy()])
        txt = ids[idx, phr]
        imf = F.normalize(model.encode_image(img), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        if neg_ids is None:
            txf = F.normalize(model.encode_text(txt), dim=-1)
            i2t = logits = scale * imf @ txf.T
        else:  # one text-tower pass over the batch's captions and their hard negatives
            neg = neg_ids[idx, phr]
            both = F.normalize(model.encode_text(torch.cat([txt, neg.flatten(0, 1)])), dim=-1)
            txf, negf = both[:len(txt)], both[len(txt):].view(len(txt), neg.shape[1], -1)
            logits = scale * imf @ txf.T
            i2t = torch.cat([logits, scale * torch.einsum("bd,bkd->bk", imf, negf)], 1)
        # Captions that are the same text are not negatives of each other.
        same = (txt[:, None, :] == txt[None, :, :]).all(-1)
        target = same.float() / same.sum(1, keepdim=True)
        i2t_target = F.pad(target, (0, i2t.shape[1] - target.shape[1]))
        loss = 0.5 * (torch.sum(-i2t_target * i2t.log_softmax(1), 1).mean()
                      + torch.sum(-target * logits.T.log_softmax(1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 100 == 0 or step == cfg.steps - 1:
            log.info("clip step %d/%d loss %.3f (%.0fs)", step, cfg.steps, loss.item(), time.time() - t0)
    model.eval()
    save_clip(model, mcfg, out, tokenizer_dir, cfg)
    return {"steps": cfg.steps, "final_loss": float(np.mean(losses[-20:])), "seconds": time.time() - t0,
            "parameters": sum(p.numel() for p in model.parameters())}


def save_clip(model: torch.nn.Module, mcfg: dict, out: Path, tokenizer_dir: Path, cfg: ClipConfig) -> None:
    from transformers import PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    preprocess = {"size": cfg.image_size, "mean": list(MEAN), "std": list(STD),
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": mcfg, "preprocess_cfg": preprocess}, indent=1))
    PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir)).save_pretrained(str(out))
