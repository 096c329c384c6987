"""The spaces novelty is measured in: a batch of views (uint8 [B, H, W, 3]) and their captions → [B, D] float.

- `clip`: the world CLIP's image tower (the paper's method), unit norm;
- `vlm`: a synth2 VLM's view of the image: its encoder's image embedding through its mapper, the prefix
  tokens averaged (unit norm);
- `pixels`: the raw view, average-pooled to 16x16 and scaled to [0, 1] (the NGU pixel baseline);
- `random_conv`: a frozen, randomly initialised conv net on the view (the random-features baseline);
- `caption`: the view's world caption through the CLIP text tower (the paper's language oracle), cached
  per caption.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

KINDS = ("clip", "vlm", "pixels", "random_conv", "caption")


def _clip_ref(path: str) -> str:
    return path if ":" in path.split("/")[0] else f"local-dir:{path}"


def _normalizer(preprocess) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean, std and image size of an open_clip preprocess pipeline, applied here on tensors (PIL per view is
    the slow part of `Encoder.encode_images`)."""
    from torchvision import transforms as T

    mean, std, size = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), None
    for t in getattr(preprocess, "transforms", []):
        if isinstance(t, T.Normalize):
            mean, std = tuple(t.mean), tuple(t.std)
        if isinstance(t, T.Resize):
            size = t.size if isinstance(t.size, int) else t.size[0]
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1), size


class ClipImageEmbedding:
    """The image tower of an open_clip model (`local-dir:world/clip`, or a world directory's `clip`)."""

    name = "clip"

    def __init__(self, clip: str) -> None:
        from generators.encoders import load_open_clip

        self.model, preprocess, _ = load_open_clip(_clip_ref(clip))
        self.mean, self.std, self.size = _normalizer(preprocess)

    def pixels(self, views: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float().div_(255.0)
        if self.size and x.shape[-1] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return (x - self.mean) / self.std

    @torch.inference_mode()
    def __call__(self, views: np.ndarray, captions: list[str]) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.pixels(views)).float(), dim=-1)


class VLMEmbedding:
    """A synth2 VLM (`synth2 vlm train`'s model folder): its encoder's image embedding through its mapper."""

    name = "vlm"

    def __init__(self, vlm: str, clip: str | None = None) -> None:
        from vlm.model import SynthVLM

        self.vlm = SynthVLM.from_pretrained(vlm).eval()
        encoder = clip or self.vlm.config.encoder
        if not encoder:
            raise ValueError(f"the VLM in {vlm} records no encoder; pass the CLIP its embeddings came from")
        self.image = ClipImageEmbedding(encoder)

    @torch.inference_mode()
    def __call__(self, views: np.ndarray, captions: list[str]) -> torch.Tensor:
        prefix = self.vlm.prefix(self.image(views, captions).to(self.vlm.device))
        return F.normalize(prefix.float().mean(1), dim=-1).cpu()


class PixelEmbedding:
    name = "pixels"

    def __init__(self, side: int = 16) -> None:
        self.side = side

    @torch.inference_mode()
    def __call__(self, views: np.ndarray, captions: list[str]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float().div_(255.0)
        return F.adaptive_avg_pool2d(x, self.side).flatten(1)


class RandomConvEmbedding:
    """A frozen conv net with random weights (seeded), RND's target architecture at this view size."""

    name = "random_conv"

    def __init__(self, dim: int = 64, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 8, 4), nn.LeakyReLU(), nn.Conv2d(16, 32, 4, 2), nn.LeakyReLU(),
                                 nn.Conv2d(32, 32, 3, 1, 1), nn.LeakyReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                                 nn.LazyLinear(dim))
        self.net(torch.zeros(1, 3, 64, 64))  # materialise the lazy layer, then draw every weight from GEN
        with torch.no_grad():
            for p in self.net.parameters():
                if p.dim() > 1:
                    nn.init.orthogonal_(p, gain=2 ** 0.5, generator=gen)
                else:
                    p.zero_()
        self.net.eval().requires_grad_(False)

    @torch.inference_mode()
    def __call__(self, views: np.ndarray, captions: list[str]) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(views)).permute(0, 3, 1, 2).float().div_(255.0)
        return self.net(x)


class CaptionEmbedding:
    """The view's caption (the world annotator's, phrasing 0) through the CLIP text tower."""

    name = "caption"

    def __init__(self, clip: str) -> None:
        from generators.encoders import Encoder

        self.encoder = Encoder(_clip_ref(clip))
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, views: np.ndarray, captions: list[str]) -> torch.Tensor:
        new = sorted({c for c in captions if c not in self.cache})
        if new:
            for c, e in zip(new, self.encoder.encode_text(new).pooled, strict=True):
                self.cache[c] = e
        return torch.stack([self.cache[c] for c in captions])


def make_embedding(kind: str, clip: str | None = None, vlm: str | None = None, seed: int = 0):
    """One of KINDS; `clip` names the world CLIP (a folder, `local-dir:`, or a world directory)."""
    if clip and (Path(clip) / "clip" / "open_clip_config.json").exists():
        clip = str(Path(clip) / "clip")
    if kind in ("clip", "caption") and not clip:
        raise ValueError(f"embedding {kind!r} needs the world CLIP (clip=WORLD/clip)")
    if kind == "clip":
        return ClipImageEmbedding(clip)
    if kind == "caption":
        return CaptionEmbedding(clip)
    if kind == "vlm":
        if not vlm:
            raise ValueError("embedding 'vlm' needs a VLM model folder (vlm=RUN/model)")
        return VLMEmbedding(vlm, clip)
    if kind == "pixels":
        return PixelEmbedding()
    if kind == "random_conv":
        return RandomConvEmbedding(seed=seed)
    raise ValueError(f"unknown embedding {kind!r}; expected one of {', '.join(KINDS)}")
