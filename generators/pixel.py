"""Pixel decoders: image pixels for captions, for the pixel-space synthesis path.

Two kinds, told apart by the folder (or hub repository) layout:

* an unCLIP-style *embedding decoder* — `decoder/` (a diffusers `UNet2DConditionModel` whose
  `class_embed_type="projection"` takes the CLIP image embedding) and `decoder_scheduler/`
  (its training noise schedule). It turns the prior's image embeddings into pixels; the
  embedded world's decoder (`generators/world/pixel_train.py`) is one.
* any diffusers *text-to-image pipeline* (`model_index.json`, loaded with
  `DiffusionPipeline.from_pretrained`), which turns captions into pixels itself (the prior is
  then not used). This path needs real weights (a hub id or a downloaded folder); it is kept
  apart and thin.

Every sample's starting noise comes from its own seed, so an image does not depend on the
batch it was drawn in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] → [B, H, W, 3] uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def is_pipeline(path: str) -> bool:
    """A local folder with `model_index.json` is a diffusers pipeline; a local folder with
    `decoder/` is an embedding decoder; a hub id is taken as a pipeline."""
    p = Path(path)
    if p.exists():
        return (p / "model_index.json").exists()
    return True


@dataclass
class EmbeddingDecoder:
    """unCLIP-style decoder: image embedding [B, D] → pixels."""

    unet: torch.nn.Module
    scheduler_config: dict
    device: str = "cpu"

    kind = "embedding"

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> EmbeddingDecoder:
        from diffusers import DDPMScheduler, UNet2DConditionModel

        try:
            unet = UNet2DConditionModel.from_pretrained(path, subfolder="decoder").to(device).eval()
            sched = DDPMScheduler.from_pretrained(path, subfolder="decoder_scheduler")
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load decoder {path!r} (expects decoder/ and decoder_scheduler/): {e}") from e
        if unet.config.class_embed_type != "projection":
            raise ValueError(f"decoder {path!r}: its UNet must take the image embedding "
                             f"(class_embed_type 'projection', got {unet.config.class_embed_type!r})")
        return cls(unet, dict(sched.config), device)

    @property
    def dim(self) -> int:
        return int(self.unet.config.projection_class_embeddings_input_dim)

    @property
    def image_size(self) -> int:
        return int(self.unet.config.sample_size)

    @torch.inference_mode()
    def decode(self, emb: torch.Tensor, seeds: list[int], *, steps: int = 25, guidance_scale: float = 1.0,
               scheduler: str = "ddim") -> np.ndarray:
        """Images [B, H, W, 3] uint8 for unit-norm image embeddings `emb` [B, D]. Guidance > 1
        mixes in the unconditional prediction (the zero embedding, as in training)."""
        from generators.prior import make_scheduler

        if len(seeds) != emb.shape[0]:
            raise ValueError(f"need one seed per embedding (got {len(seeds)} seeds for {emb.shape[0]})")
        sched = make_scheduler(scheduler, self.scheduler_config)
        sched.set_timesteps(steps, device=self.device)
        c, s = int(self.unet.config.in_channels), self.image_size
        x = torch.stack([torch.randn(c, s, s, generator=torch.Generator().manual_seed(int(q))) for q in seeds])
        x = x.to(self.device) * sched.init_noise_sigma
        cond = emb.float().to(self.device)
        guided = guidance_scale > 1.0
        if guided:
            cond = torch.cat([torch.zeros_like(cond), cond])
        for t in sched.timesteps:
            inp = sched.scale_model_input(torch.cat([x, x]) if guided else x, t)
            pred = self.unet(inp, t, encoder_hidden_states=None, class_labels=cond).sample
            if guided:
                uncond, cnd = pred.chunk(2)
                pred = uncond + guidance_scale * (cnd - uncond)
            x = sched.step(pred, t, x).prev_sample
        return to_uint8(x)


@dataclass
class TextToImagePipeline:
    """Any diffusers text-to-image pipeline (local folder with `model_index.json` or hub id)."""

    pipe: object
    device: str = "cpu"

    kind = "text"

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> TextToImagePipeline:
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(path).to(device)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load diffusers pipeline {path!r}: {e}") from e
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, device)

    def generate(self, captions: list[str], seeds: list[int], *, steps: int = 25,
                 guidance_scale: float = 1.0) -> np.ndarray:
        gens = [torch.Generator(self.device).manual_seed(int(s)) for s in seeds]
        out = self.pipe(list(captions), num_inference_steps=steps, guidance_scale=guidance_scale, generator=gens,
                        output_type="np")
        return (np.clip(np.asarray(out.images), 0, 1) * 255).round().astype(np.uint8)


def load_decoder(path: str, device: str = "cpu") -> EmbeddingDecoder | TextToImagePipeline:
    return TextToImagePipeline.from_pretrained(path, device) if is_pipeline(path) else \
        EmbeddingDecoder.from_pretrained(path, device)
