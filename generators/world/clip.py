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
    # How many of the five shape swaps each image scores per step (a fresh random subset each step): the
    # text tower's passes grow with 1 + this, and it was two thirds of a step's time with all five.
    negatives_per_step: int = 5
    # build_world trains on the pretrain split and its mirror image (`mirrored`): twice the renders, same step time.
    mirror: bool = False
    # Share of the CLIP's training renders that hold no object (the background alone, captioned EMPTY_CAPTION).
    # Without them the CLIP has never seen an image without an object, and places such images anywhere; a
    # consumer whose views are mostly empty (consumers/exploration) measures novelty among them.
    empty_share: float = 0.0
    # Order negatives for two-object scenes (needs shape_negatives): a relation scene's first two hard negatives
    # are its caption with the two objects swapped and with the relation on the other axis; the other three are
    # shape swaps. Without them nothing in training separates "a red star above a blue circle" from "a blue
    # circle above a red star" but the in-batch captions. Measured on the quick world
    # (bench/world_relation_negatives.py, probes in a fixed wording, `Scene.canonical`): little change, a linear
    # probe reads both objects in place from 0.42 of test relation scenes with them and 0.41 without, the axis
    # from 1.00 with either.
    relation_negatives: bool = False


EMPTY_CAPTION = "an empty scene"


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


OTHER_AXIS = {"left of": "above", "right of": "below", "above": "left of", "below": "right of"}


def hard_negatives(scene, cfg: ClipConfig) -> list[list[str]]:
    """Per phrasing of `scene`'s captions, its hard negatives: the shape swaps, or for a relation scene with
    `cfg.relation_negatives` the order swap, the other-axis relation and the first three shape swaps."""
    from dataclasses import replace

    from generators.world.annotate import captions

    shapes = shape_swapped(scene)
    if not (cfg.relation_negatives and scene.kind == "relation"):
        return shapes
    order = captions(replace(scene, objects=scene.objects[::-1]))
    axis = captions(replace(scene, relation=OTHER_AXIS[scene.relation]))
    return [[order[p], axis[p]] + shapes[p][:len(shapes[p]) - 2] for p in range(len(shapes))]


def clip_training_set(images: np.ndarray, scenes: list, cfg: ClipConfig,
                      seed: int = 0) -> tuple[np.ndarray, list[list[str]], list[list[list[str]]] | None]:
    """The CLIP's training set from a split's renders and scenes: (images, per image its phrasings, per image
    and phrasing its hard negatives or None), with the split's mirror image (`cfg.mirror`) and, for
    `cfg.empty_share` of the whole, renders with no object captioned EMPTY_CAPTION, whose hard negatives
    are captions of the split's scenes (the same background with an object is what an empty render is not)."""
    from generators.world.annotate import captions
    from generators.world.render import render

    if not 0.0 <= cfg.empty_share < 1.0:
        raise ValueError(f"empty_share must be in [0, 1), got {cfg.empty_share}")
    if cfg.relation_negatives and not cfg.shape_negatives:
        raise ValueError("relation_negatives needs shape_negatives (they share its five hard-negative slots)")
    if cfg.mirror:
        images, scenes = np.concatenate([images, images[:, :, ::-1]]), scenes + [mirrored(s) for s in scenes]
    caps = [captions(s) for s in scenes]
    negs = [hard_negatives(s, cfg) for s in scenes] if cfg.shape_negatives else None
    n_empty = round(cfg.empty_share * len(images) / (1.0 - cfg.empty_share))
    if n_empty:
        rng = np.random.default_rng([seed, 300])
        empty = np.stack([np.asarray(render(None, rng, images.shape[1])) for _ in range(n_empty)])
        images = np.concatenate([images, empty])
        caps += [[EMPTY_CAPTION]] * n_empty
        if negs is not None:
            k = len(negs[0][0])
            negs += [[[caps[int(j)][int(rng.integers(len(caps[int(j)])))] for j in rng.integers(len(scenes), size=k)]]
                     for _ in range(n_empty)]
    return images, caps, negs


def _encode_text(model, ids: torch.Tensor) -> torch.Tensor:
    """open_clip's `encode_text` on the ids cut after the batch's last end-of-text: the same result (the
    mask is causal and the pooled state is the end-of-text's), with less of the padding's work."""
    from open_clip.transformer import text_global_pool

    n = int((ids == model.text_eos_id).int().argmax(1).max()) + 1
    ids = ids[:, :n]
    x = model.token_embedding(ids) + model.positional_embedding[:n]
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:n, :n]))
    return text_global_pool(x, ids, model.text_pool_type, eos_token_id=model.text_eos_id) @ model.text_projection


def mirrored(scene):
    """`scene` seen in a mirror (left and right swapped): the caption of a horizontally flipped render. Every
    shape is drawn symmetric about its vertical axis, so a flipped render is a render of this scene."""
    from dataclasses import replace

    swap = {"left": "right", "right": "left"}
    position = None if scene.position is None else " ".join(swap.get(w, w) for w in scene.position.split())
    relation = {"left of": "right of", "right of": "left of"}.get(scene.relation, scene.relation)
    return replace(scene, position=position, relation=relation)


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
    if not 1 <= cfg.negatives_per_step <= 5:
        raise ValueError(f"negatives_per_step must be 1..5, got {cfg.negatives_per_step}")
    # channels_last: about a tenth off the conv tower's time on this CPU (fp32; bf16 autocast was slower
    # at these widths, bench/results/world_clip_sweep.json).
    model.visual.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    t0, losses = time.time(), []
    for step in range(cfg.steps):
        idx = torch.randint(len(images), (cfg.batch_size,), generator=gen)
        phr = torch.randint(n_phr, (cfg.batch_size,), generator=gen)
        img = _to_tensor(images[idx.numpy()]).contiguous(memory_format=torch.channels_last)
        txt = ids[idx, phr]
        imf = F.normalize(model.encode_image(img), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100)
        if neg_ids is None:
            txf = F.normalize(_encode_text(model, txt), dim=-1)
            i2t = logits = scale * imf @ txf.T
        else:  # one text-tower pass over the batch's captions and their hard negatives
            neg = neg_ids[idx, phr]
            if cfg.negatives_per_step < neg.shape[1]:
                pick = torch.rand(neg.shape[:2], generator=gen).argsort(1)[:, :cfg.negatives_per_step]
                neg = neg.gather(1, pick[..., None].expand(-1, -1, neg.shape[2]))
            both = F.normalize(_encode_text(model, torch.cat([txt, neg.flatten(0, 1)])), dim=-1)
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
    model.eval().to(memory_format=torch.contiguous_format)
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
